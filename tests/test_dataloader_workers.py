"""Dataloader workers ask for a parent-death signal and keep mmengine's seeding (the kill of a
whole training run is in test_tools.py, of a distributed one in test_segmentation.py), and so do
the processes torchrun starts; in epoch-based training workers seed each sample."""
import multiprocessing
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.dataset import BaseDataset
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

from cnxv2_dense.engine import EndWithParent, end_workers_with_parent
from cnxv2_dense.engine.random_state_hook import SeedEachSample
from cnxv2_dense.engine.workers import build_dataloaders_ending_with_parent

from .conftest import ROOT, parent_death_signal


class WorkerReport(Dataset):
    """Each item: the worker's parent-death signal and random draws from its generators."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(signal=parent_death_signal(), torch=torch.rand(1).item(),
                    numpy=float(np.random.rand()), seed=torch.initial_seed())


def loader_cfg():
    return dict(dataset=WorkerReport(), batch_size=1, num_workers=1,
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='pseudo_collate'))


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='prctl is Linux-only')
def test_workers_get_the_signal_and_the_same_seeded_data():
    plain = Runner.build_dataloader(loader_cfg(), seed=7)
    ending = end_workers_with_parent(Runner.build_dataloader(loader_cfg(), seed=7))
    assert isinstance(ending.worker_init_fn, EndWithParent)
    assert ending.worker_init_fn.init_fn.func is plain.worker_init_fn.func  # mmengine's, chained
    plain_items = [{k: v[0] for k, v in batch.items()} for batch in plain]  # batches of 1
    ending_items = [{k: v[0] for k, v in batch.items()} for batch in ending]
    assert {item['signal'] for item in plain_items} == {0}
    assert {item['signal'] for item in ending_items} == {int(signal.SIGKILL)}
    # mmengine's worker seed (seed + worker id for one process) and the same draws as without
    assert {item['seed'] for item in ending_items} == {7}
    for key in ('torch', 'numpy'):
        assert [i[key] for i in ending_items] == [i[key] for i in plain_items]


# Run in a child process: the signal would otherwise stay set on the test process itself.
UNDER_TORCHRUN = """
import os
from cnxv2_dense.engine import end_with_launcher
from tests.conftest import parent_death_signal
alone = end_with_launcher(), parent_death_signal()
os.environ['TORCHELASTIC_RUN_ID'] = 'test'  # what torchrun sets in the processes it starts
print(alone, (end_with_launcher(), parent_death_signal()))
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='prctl is Linux-only')
def test_a_process_started_by_torchrun_asks_to_end_with_it():
    """Only under torchrun: a process started from a shell may outlive it on purpose."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop('TORCHELASTIC_RUN_ID', None)
    out = subprocess.run([sys.executable, '-c', UNDER_TORCHRUN], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == f'(False, 0) (True, {int(signal.SIGKILL)})'


def test_wrapping_is_idempotent_and_skips_loaders_without_workers():
    loader = Runner.build_dataloader(loader_cfg(), seed=0)
    end_workers_with_parent(loader)
    chained = loader.worker_init_fn
    end_workers_with_parent(loader)
    assert loader.worker_init_fn is chained  # not wrapped twice
    in_process = Runner.build_dataloader(dict(loader_cfg(), num_workers=0), seed=0)
    init = in_process.worker_init_fn
    assert end_workers_with_parent(in_process).worker_init_fn is init


def test_every_loader_a_runner_builds_is_wrapped():
    class Holder:  # what build_dataloaders_ending_with_parent needs of a Runner
        build_dataloader = staticmethod(Runner.build_dataloader)

    runner = Holder()
    build_dataloaders_ending_with_parent(runner)
    loader = runner.build_dataloader(loader_cfg(), seed=3, diff_rank_seed=False)
    assert isinstance(loader.worker_init_fn, EndWithParent)
    assert loader.worker_init_fn.init_fn.keywords['seed'] == 3


class RandomItems(BaseDataset):
    """Four samples whose pipeline draws from every generator."""

    def load_data_list(self):
        return [dict(index=i) for i in range(4)]


def draw(results: dict) -> dict:
    return dict(results, draws=(random.random(), float(np.random.rand()), torch.rand(1).item()))


def seeded_loader(epoch) -> DataLoader:
    loader = DataLoader(RandomItems(pipeline=[draw], serialize_data=False), batch_size=1,
                        num_workers=1, persistent_workers=True, collate_fn=lambda b: b[0])
    loader.worker_init_fn = SeedEachSample(None, seed=5, rank=0, epoch=epoch)
    return loader


def test_each_sample_is_drawn_from_its_epoch_and_index_not_the_worker_history():
    """What makes persistent workers resume exactly: a worker started at epoch 1 draws for each
    sample what a worker that has lived through epoch 0 draws."""
    epoch = multiprocessing.RawValue('q', 0)
    lived = seeded_loader(epoch)
    first = {item['index']: item['draws'] for item in lived}
    epoch.value = 1
    second = {item['index']: item['draws'] for item in lived}  # same worker, epoch 1
    fresh = {item['index']: item['draws'] for item in seeded_loader(epoch)}  # new worker
    assert second == fresh
    assert all(first[i] != second[i] for i in first)  # each epoch draws anew
    assert len({draws for draws in first.values()}) == 4  # and each sample differently
