"""Random states in checkpoints, so that a resumed run draws what the uninterrupted one drew.

mmengine seeds every process once, when the Runner is built; a run resumed with ``--resume`` is
seeded again from the start and then continues with random numbers the uninterrupted run never
used (RoI proposal sampling, FCMAE masks, drop path, augmentations run in the main process).
Measured before this hook: the demo Mask R-CNN killed after its first epoch and resumed ended
up to 2.9e-4 away from an uninterrupted run.

:class:`RandomStateHook` saves the generators of the main process (Python ``random``, NumPy's
global generator, torch's CPU generator and every CUDA device's) in each checkpoint and restores
them when a run resumes, just before its first training epoch (before mmengine replays the
data of a part-done iteration-based run). Validation during training gets its own copy of the
states back afterwards, so whether and when it runs does not change the training's draws.

What it covers: a single process. Dataloader workers are seeded by mmengine from the run's seed
and worker id when they start; that is exact again after a resume when workers start anew each
epoch (``persistent_workers=False``) of an epoch-based loop, and in an iteration-based loop,
whose workers replay the skipped batches. Workers kept across epochs (``persistent_workers=True``)
in an epoch-based loop, and data transforms run in the main process (``num_workers=0``) of an
iteration-based loop, still draw differently after a resume.
"""
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook

from ..registry import HOOKS

CHECKPOINT_KEY = 'random_states'


def get_random_states() -> Dict[str, Any]:
    """This process's generator states, in types ``torch.load(weights_only=True)`` reads."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    states: Dict[str, Any] = dict(
        python=random.getstate(),
        numpy=dict(name=name, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached_gaussian)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: Dict[str, Any]) -> None:
    """Restore what :func:`get_random_states` returned."""
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))
    numpy_state = states['numpy']
    np.random.set_state((numpy_state['name'], numpy_state['keys'].numpy().astype(np.uint32),
                         numpy_state['pos'], numpy_state['has_gauss'],
                         numpy_state['cached_gaussian']))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Saves the random states in each checkpoint and restores them on resume.

    The tools add it to every run (``custom_hooks``); a config can name it too:
    ``custom_hooks = [dict(type='cnxv2_dense.RandomStateHook')]``. Checkpoints written without it
    still resume (with mmengine's fresh seeding, as before).
    """

    priority = 'VERY_HIGH'  # restore before other hooks of the same stage draw

    def __init__(self) -> None:
        self._before_val: Optional[Dict[str, Any]] = None
        self._loaded: Optional[List[Dict[str, Any]]] = None
        self._checked_load = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # a checkpoint saved during validation (save_best) records the training's states
        states = self._before_val if self._before_val is not None else get_random_states()
        checkpoint[CHECKPOINT_KEY] = [states]  # one entry per process (only one so far)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(CHECKPOINT_KEY)
        self._checked_load = True

    def before_train_epoch(self, runner) -> None:
        if not self._checked_load:
            return
        loaded, self._loaded, self._checked_load = self._loaded, None, False
        if runner.iter == 0 and runner.epoch == 0:  # load_from (fine-tuning), not a resume
            return
        if loaded is None:
            runner.logger.info('The resumed checkpoint holds no random states (written before '
                               'cnxv2_dense saved them): the run continues with freshly seeded '
                               'generators, and its results differ from an uninterrupted run.')
            return
        if get_world_size() != len(loaded):
            runner.logger.warning(
                f'The checkpoint holds the random states of {len(loaded)} process(es) and this run '
                f'has {get_world_size()}: they are not restored, so results differ from an '
                'uninterrupted run.')
            return
        set_random_states(loaded[0])
        runner.logger.info('Restored the random states saved in the resumed checkpoint.')

    def before_val(self, runner) -> None:
        self._before_val = get_random_states()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_random_states(self._before_val)
            self._before_val = None
