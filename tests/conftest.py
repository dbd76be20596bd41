import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Small enough to build and run in milliseconds; four stages like every real arch.
TINY_ARCH = dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])


def cpu_autocast_supports(dtype: torch.dtype) -> bool:
    """Whether ``torch.autocast('cpu', dtype=dtype)`` autocasts. bfloat16 does on every torch;
    float16 only on newer ones: torch 2.1, the oldest supported, warns that it is disabled and
    then refuses it."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        try:
            torch.autocast('cpu', dtype=dtype)
        except (RuntimeError, UserWarning):
            return False
    return True


def run_tool(args, **env):
    """Run a command from the repo root as a user would (extra environment variables in
    ``env``); fail with the end of its output unless it exits 0. Returns stdout + stderr."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, **env)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def run_killed_after_first_checkpoint(command: list, work: Path) -> None:
    """Run ``command`` (training into ``work``) and SIGKILL it as soon as it has written its
    first checkpoint, as the OOM killer or a preemption would."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env=dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable,
                                     OMP_NUM_THREADS='1'))
    try:
        deadline = time.monotonic() + 300
        while not (work / 'last_checkpoint').is_file():
            assert proc.poll() is None, f'the run ended (status {proc.returncode}) unkilled'
            assert time.monotonic() < deadline, 'no checkpoint was written'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, 'the run ended before it was killed'
    finally:
        if proc.poll() is None:
            proc.kill()


def final_weights(checkpoint: Path) -> dict:
    """The model weights of an mmengine checkpoint (written by this test's own run)."""
    return torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']


def assert_same_weights(resumed: dict, uninterrupted: dict) -> None:
    """Bit-identical state dicts; otherwise name the tensors that differ."""
    assert resumed.keys() == uninterrupted.keys()
    differ = [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]
    assert not differ, f'{len(differ)} tensors differ, e.g. {differ[:3]}'


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)
