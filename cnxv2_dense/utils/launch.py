"""Small pieces shared by the tools: loading a config, distributed runs on the CPU."""
import gc
import os
import os.path as osp
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config

from ..dependencies import missing_toolbox_error, require_toolbox, toolbox_of_distribution


def load_config(config: str, launcher: str = 'none', cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None) -> Config:
    """Load a config and apply the overrides every tool shares (mmdet's tools do the same).

    The work dir defaults to ``./work_dirs/<config name>``. The toolbox the config needs
    (mmdet or mmsegmentation, both optional) must be installed at a supported version.

    Raises:
        DependencyError: The config inherits from, or is built by, a toolbox that is missing or
            outside its supported range; the message says what to install.
    """
    try:
        cfg = Config.fromfile(config)
    except ModuleNotFoundError as err:
        # mmengine resolves `mmdet::` / `mmseg::` bases by distribution name and fails with
        # "<distribution> is not installed, please install <distribution> manually".
        scope = toolbox_of_distribution(str(err).split(' ', 1)[0])
        if scope is None:
            raise
        raise missing_toolbox_error(scope, f'{config} inherits from {scope}:: configs') from err
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    require_toolbox(cfg.get('default_scope'))
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def prepare_cpu_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch`` work on machines without a GPU.

    mmengine's launcher pins a CUDA device and uses NCCL; without a GPU we start the process
    group with gloo ourselves (the Runner then skips its own init) and wrap the model in DDP
    with ``device_ids=None``, which is what DDP expects for CPU modules.
    """
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))


def finish_distributed() -> None:
    """Tear down the process group a distributed run started, before the interpreter exits.

    Call it after dropping the Runner (``del runner``). gloo's worker threads stop only when the
    last reference to the process group goes, and the DDP-wrapped model holds one, inside the
    Runner's reference cycles. A worker thread left running can still be releasing tensors from
    the last collective when the interpreter shuts down; it then cannot take the GIL, and the
    process aborts ("terminate called without an active exception", SIGABRT) after its work is
    done. Collecting the Runner here, then destroying the group, joins those threads.
    Does nothing when no process group exists.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
