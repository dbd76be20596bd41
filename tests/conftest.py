import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Small enough to build and run in milliseconds; four stages like every real arch.
TINY_ARCH = dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])


def run_tool(args, **env):
    """Run a command from the repo root as a user would (extra environment variables in
    ``env``); fail with the end of its output unless it exits 0. Returns stdout + stderr."""
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHON=sys.executable, **env)
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)
