"""The Runner the tools build: the config's own, with checkpoints written safely that carry the
random states, one set of BN statistics across processes, and dataloader workers that end with
the run."""
from mmengine.config import Config, ConfigDict
from mmengine.hooks import CheckpointHook
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .buffers_hook import AverageBuffersHook
from .checkpoint_hook import AtomicCheckpointHook
from .random_state_hook import RandomStateHook
from .workers import build_dataloaders_ending_with_parent

ATOMIC_CHECKPOINT_HOOK = 'cnxv2_dense.AtomicCheckpointHook'
RANDOM_STATE_HOOK = 'cnxv2_dense.RandomStateHook'
AVERAGE_BUFFERS_HOOK = 'cnxv2_dense.AverageBuffersHook'
COCO_METRIC = 'cnxv2_dense.CocoMetric'
# The names a config gives mmdet's COCO metric (mmdet's `_base_` datasets say 'CocoMetric').
_MMDET_COCO_METRIC = ('CocoMetric', 'mmdet.CocoMetric')
# The names a config gives mmengine's hook (its own `default_runtime` files say 'CheckpointHook').
_PLAIN_CHECKPOINT_HOOK = ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook)


def use_atomic_checkpoints(cfg: Config) -> None:
    """Put :class:`AtomicCheckpointHook` in place of the config's ``CheckpointHook``, in place.

    Its arguments are kept. A config without a checkpoint hook gets the one mmengine would add
    (``interval=1``); one that turns it off (``checkpoint=None``) or names another hook type is
    left as it is.
    """
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = ConfigDict()
    hooks = cfg.default_hooks
    if 'checkpoint' not in hooks:
        hooks.checkpoint = ConfigDict(type=ATOMIC_CHECKPOINT_HOOK, interval=1)
        return
    hook = hooks.checkpoint
    if hook is None or isinstance(hook, AtomicCheckpointHook):
        return
    if isinstance(hook, dict) and hook.get('type', 'CheckpointHook') in _PLAIN_CHECKPOINT_HOOK:
        hook['type'] = ATOMIC_CHECKPOINT_HOOK


def _add_custom_hook(cfg: Config, name: str, hook_class: type) -> None:
    """Add the hook ``name`` to the config's ``custom_hooks`` (in place) unless it is there."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(hook, dict) and hook.get('type') in (name, hook_class)
               or isinstance(hook, hook_class) for hook in hooks):
        hooks.append(ConfigDict(type=name))
    cfg.custom_hooks = hooks


def save_random_states(cfg: Config) -> None:
    """Add :class:`~cnxv2_dense.engine.random_state_hook.RandomStateHook` to the config's
    ``custom_hooks`` (in place) unless it is there."""
    _add_custom_hook(cfg, RANDOM_STATE_HOOK, RandomStateHook)


def average_buffers(cfg: Config) -> None:
    """Add :class:`~cnxv2_dense.engine.buffers_hook.AverageBuffersHook` to the config's
    ``custom_hooks`` (in place) unless it is there: the processes of a distributed run share one
    set of BN running statistics, the one the checkpoints hold and validation uses."""
    _add_custom_hook(cfg, AVERAGE_BUFFERS_HOOK, AverageBuffersHook)


def accept_coco_files_without_info(cfg: Config) -> None:
    """Put :class:`cnxv2_dense.evaluation.coco_metric.CocoMetric` in place of mmdet's
    ``CocoMetric`` in the val and test evaluators (in place), arguments kept.

    It evaluates annotation files that leave out the optional ``info`` / ``licenses`` keys, where
    mmdet's metric fails at the first validation.
    """
    for key in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(key)
        for evaluator in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            if isinstance(evaluator, dict) and evaluator.get('type') in _MMDET_COCO_METRIC:
                evaluator['type'] = COCO_METRIC


def build_runner(cfg: Config) -> Runner:
    """The Runner the config describes (its ``runner_type`` or mmengine's), set up for the tools.

    Checkpoints go through :func:`use_atomic_checkpoints` and carry the random states
    (:func:`save_random_states`), restored on resume; the processes of a distributed run average
    their BN statistics (:func:`average_buffers`); the workers of every dataloader the
    Runner builds end when this process dies, even by SIGKILL
    (:func:`~cnxv2_dense.engine.workers.build_dataloaders_ending_with_parent`); COCO files
    without ``info`` / ``licenses`` are evaluated (:func:`accept_coco_files_without_info`).
    """
    use_atomic_checkpoints(cfg)
    save_random_states(cfg)
    average_buffers(cfg)
    accept_coco_files_without_info(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    build_dataloaders_ending_with_parent(runner)
    return runner
