"""Helpers of the tests that run several processes (tools/dist_train.sh, gloo on the CPU).

A test config adds :data:`RECORD_EACH_PROCESS` (it loads this module through ``custom_imports``;
the tools put the repo root on ``PYTHONPATH``), and each process then writes to the work dir:

- ``losses_rank{R}.jsonl``: one line per iteration, the losses of that process's part of the
  batch;
- ``buffers_rank{R}_iter{N}.pth``: its floating-point model buffers (BN running statistics) after
  iteration N, before :class:`cnxv2_dense.AverageBuffersHook` (priority LOW) averages them;
- ``val_buffers_rank{R}_iter{N}.pth``: the buffers it validates with after iteration N.
"""
import json
import socket
from pathlib import Path
from typing import Dict, List

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

RECORD_EACH_PROCESS = """
custom_imports = dict(imports=['cnxv2_dense', 'tests.distributed'], allow_failed_imports=False)
custom_hooks = [dict(type='RecordEachProcess')]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def floating_buffers(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Copies of the model's floating-point buffers, named as in its checkpoint."""
    model = getattr(model, 'module', model)  # (DDP wraps it)
    return {name: buffer.detach().clone() for name, buffer in model.named_buffers()
            if buffer.is_floating_point()}


@HOOKS.register_module(force=True)
class RecordEachProcess(Hook):
    priority = 'NORMAL'  # before AverageBuffersHook (LOW) and the checkpoint hook (VERY_LOW)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        work_dir, rank, done = Path(runner.work_dir), get_rank(), runner.iter + 1
        with open(work_dir / f'losses_rank{rank}.jsonl', 'a') as f:
            f.write(json.dumps({key: float(value) for key, value in outputs.items()}) + '\n')
        torch.save(floating_buffers(runner.model), work_dir / f'buffers_rank{rank}_iter{done}.pth')

    def before_val_epoch(self, runner) -> None:
        torch.save(floating_buffers(runner.model),
                   Path(runner.work_dir) / f'val_buffers_rank{get_rank()}_iter{runner.iter}.pth')


def recorded_losses(work_dir: Path, rank: int) -> List[Dict[str, float]]:
    """The losses process ``rank`` recorded, one dict per iteration."""
    lines = (Path(work_dir) / f'losses_rank{rank}.jsonl').read_text().splitlines()
    return [json.loads(line) for line in lines]


def recorded_buffers(path: Path) -> Dict[str, torch.Tensor]:
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_two_processes_agree_with_one(whole: Path, split: Path, checkpoint: str) -> None:
    """The losses of each iteration of the one-process run in ``whole`` equal the mean of the two
    processes' in ``split``, and the weights in their ``checkpoint`` agree (float tolerance)."""
    import pytest  # (the training processes import this module too; they need neither)

    from .conftest import final_weights
    one = recorded_losses(whole, 0)
    two = list(zip(recorded_losses(split, 0), recorded_losses(split, 1)))
    assert len(one) == len(two) >= 2
    for step, (losses, (first, second)) in enumerate(zip(one, two)):
        assert losses.keys() == first.keys() == second.keys()
        for key in losses:
            assert losses[key] == pytest.approx((first[key] + second[key]) / 2, rel=1e-5,
                                                abs=1e-6), (step, key)
    assert one[0]['loss'] != one[-1]['loss']  # (it trained)
    trained = final_weights(whole / checkpoint)
    distributed = final_weights(split / checkpoint)
    assert trained.keys() == distributed.keys()
    for name in trained:
        torch.testing.assert_close(distributed[name], trained[name], rtol=1e-4, atol=1e-6,
                                   msg=lambda text: f'{name}: {text}')
