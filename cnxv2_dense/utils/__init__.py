from .launch import finish_distributed, load_config, prepare_cpu_distributed
from .safe_load import allow_mmengine_checkpoints, mmengine_checkpoint_globals
from .work_dir import earlier_checkpoints, refuse_to_overwrite

__all__ = ['allow_mmengine_checkpoints', 'earlier_checkpoints', 'finish_distributed', 'load_config',
           'mmengine_checkpoint_globals', 'prepare_cpu_distributed', 'refuse_to_overwrite']
