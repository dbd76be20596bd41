"""Random states in checkpoints, so that a resumed run draws what the uninterrupted one drew.

mmengine seeds every process once, when the Runner is built; a run resumed with ``--resume`` is
seeded again from the start and then continues with random numbers the uninterrupted run never
used (RoI proposal sampling, FCMAE masks, drop path, augmentations run in the main process).
Measured before this hook: the demo Mask R-CNN killed after its first epoch and resumed ended
up to 2.9e-4 away from an uninterrupted run.

:class:`RandomStateHook` saves the generators of the training processes (Python ``random``,
NumPy's global generator, torch's CPU generator and every CUDA device's) in each checkpoint and
restores them when a run resumes: before its first training epoch, or in an iteration-based
loop once mmengine has replayed the batches already trained on (loading them in the main
process draws). Validation during training gets its own copy of the states back afterwards, so
whether and when it runs does not change the training's draws.

In a distributed run every process's states are saved when the checkpoint hook is
:class:`AtomicCheckpointHook` (it has this hook gather them before saving, see :meth:`gather`),
and each process gets its own back on a resume with the same number of processes.

Dataloader workers draw in their own processes. In an epoch-based loop the hook has each worker
seed its generators for every sample from (seed, rank, epoch, sample index)
(:class:`SeedEachSample`), so a sample's augmentation does not depend on what the worker drew
before: the same after a resume as without, whether workers persist across epochs or not. In an
iteration-based loop mmengine replays the batches already trained on to reach the resumed
iteration; workers replay them too, and draw as in the uninterrupted run.
"""
import functools
import multiprocessing
import random
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from torch.utils.data import DataLoader, get_worker_info

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


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _mmengine_datasets(dataset) -> Iterator[BaseDataset]:
    """The mmengine datasets inside ``dataset`` (itself, or inside wrappers)."""
    if isinstance(dataset, BaseDataset):
        yield dataset
    for key in ('dataset', 'datasets'):
        inner = getattr(dataset, key, None)
        for one in inner if isinstance(inner, (list, tuple)) else [inner]:
            if one is not None and one is not dataset:
                yield from _mmengine_datasets(one)


class SeedEachSample:
    """A dataloader ``worker_init_fn`` for epoch-based training: after ``init_fn``, the worker
    prepares every sample with generators seeded from (seed, rank, epoch, sample index).

    Args:
        init_fn (callable, optional): The loader's worker init function, run first.
        seed (int): The run's seed.
        rank (int): This process's rank.
        epoch: A shared integer (``multiprocessing.RawValue``) the main process sets to the epoch
            before the epoch's batches are requested.
    """

    def __init__(self, init_fn: Optional[Callable[[int], None]], seed: int, rank: int,
                 epoch) -> None:
        self.init_fn, self.seed, self.rank, self.epoch = init_fn, seed, rank, epoch

    def __call__(self, worker_id: int) -> None:
        if self.init_fn is not None:
            self.init_fn(worker_id)
        # NOTE: mmengine's BaseDataset.__getitem__ calls self.prepare_data(idx) (also for the
        # index it draws instead of a sample whose pipeline returned None); this worker's copy
        # of the dataset gets a seeding wrapper around it.
        for dataset in _mmengine_datasets(get_worker_info().dataset):
            dataset.prepare_data = functools.partial(self._prepare, dataset.prepare_data)

    def _prepare(self, prepare_data: Callable[[int], Any], index: int) -> Any:
        entropy = [self.seed % 2**32, self.rank, self.epoch.value, index]
        seed_all(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        return prepare_data(index)


class _RestoreAfter:
    """An iterator that restores ``states`` once ``count`` items have been taken from it."""

    def __init__(self, iterator, count: int, states: Dict[str, Any]) -> None:
        self.iterator, self.count, self.states = iterator, count, states

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self.iterator)
        self.count -= 1
        if self.count == 0:
            set_random_states(self.states)
        return item


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
        self._gathered: Optional[List[Dict[str, Any]]] = None
        self._loaded: Optional[List[Dict[str, Any]]] = None
        self._checked_load = False
        self._epoch = None  # shared with the workers of SeedEachSample

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        loader = getattr(loop, 'dataloader', None)
        if (isinstance(loop, EpochBasedTrainLoop) and isinstance(loader, DataLoader)
                and loader.num_workers > 0 and runner.seed is not None):
            self._epoch = multiprocessing.RawValue('q', runner.epoch)
            loader.worker_init_fn = SeedEachSample(loader.worker_init_fn, runner.seed,
                                                   get_rank(), self._epoch)
            # NOTE: a new iterator draws its workers' base seed from this generator (by default
            # the global one). Persistent workers keep their iterator across epochs, a resumed
            # run makes a new one: drawn from the global generator, that draw would shift every
            # later draw of the main process. The workers reseed themselves anyway.
            loader.generator = torch.Generator()
            loader.generator.manual_seed(runner.seed)

    def _training_states(self) -> Dict[str, Any]:
        # a checkpoint saved during validation (save_best) records the training's states
        return self._before_val if self._before_val is not None else get_random_states()

    def gather(self, runner) -> None:
        """Collect the states of every process for the checkpoint about to be saved.

        A collective call: every process must make it (``AtomicCheckpointHook`` does, just
        before it saves); ``Runner.save_checkpoint`` and so :meth:`before_save_checkpoint` run on
        the main process only.
        """
        states = self._training_states()
        self._gathered = all_gather_object(states) if get_world_size() > 1 else [states]

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        gathered, self._gathered = self._gathered, None
        checkpoint[CHECKPOINT_KEY] = gathered or [self._training_states()]  # one per process

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(CHECKPOINT_KEY)
        self._checked_load = True

    def before_train_epoch(self, runner) -> None:
        if self._epoch is not None:
            self._epoch.value = runner.epoch
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
        states = loaded[get_rank()]
        loop = runner.train_loop
        replayed = getattr(loop, 'dataloader_iterator', None)
        if isinstance(loop, IterBasedTrainLoop) and replayed is not None and runner.iter > 0:
            # mmengine now replays the batches already trained on (data loaded in this process
            # draws while it does); restore when the replay is over.
            loop.dataloader_iterator = _RestoreAfter(replayed, runner.iter, states)
        else:
            set_random_states(states)
        runner.logger.info('Restored the random states saved in the resumed checkpoint.')

    def before_val(self, runner) -> None:
        self._before_val = get_random_states()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_random_states(self._before_val)
            self._before_val = None
