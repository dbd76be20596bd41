from .launch import finish_distributed, load_config, prepare_cpu_distributed
from .safe_load import allow_mmengine_checkpoints, mmengine_checkpoint_globals

__all__ = ['allow_mmengine_checkpoints', 'finish_distributed', 'load_config',
           'mmengine_checkpoint_globals', 'prepare_cpu_distributed']
