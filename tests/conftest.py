import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Small enough to build and run in milliseconds; four stages like every real arch.
TINY_ARCH = dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)
