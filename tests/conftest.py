"""What the test modules share: the ``slow`` marker, paths, tiny models and data, and the
helpers that run tools as a user would. No test module imports another; what two of them need
lives here (``tests/distributed.py`` holds what the training processes of the multi-process
tests load through ``custom_imports``).

Every test module runs on its own (``pytest tests/test_x.py``); ``docs/testing.md`` says which
command runs what.
"""
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import init_default_scope
from PIL import Image
from torch.utils.data import Dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Small enough to build and run in milliseconds; four stages like every real arch.
TINY_ARCH = dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])
DEMO_CONFIG = os.path.join(ROOT, 'configs', 'mask_rcnn_cnxv2_demo_shapes.py')
PR_GET_PDEATHSIG = 2  # from <linux/prctl.h>


# --- The published ConvNeXt V1 rule, written out independently of cnxv2_dense -----------------
# ConvNeXt V1 repo, object_detection/mmcv_custom/layer_decay_optimizer_constructor.py: with
# `num_layers` from the config, `layer_wise` ids come from the function below called with
# `num_layers`, `stage_wise` ids from the one after called with `num_layers + 2`, and the lr scale
# is decay_rate ** (num_layers + 2 - layer_id - 1). No weight decay for 1-D params and biases.

def v1_layer_id_layer_wise(var_name: str, num_max_layer: int) -> int:
    parts = var_name.split('.')
    if var_name.startswith('backbone.downsample_layers'):
        stage_id = int(parts[2])
        return {0: 0, 1: 2, 2: 3, 3: num_max_layer}[stage_id]
    if var_name.startswith('backbone.stages'):
        stage_id, block_id = int(parts[2]), int(parts[3])
        if stage_id == 0:
            return 1
        if stage_id == 1:
            return 2
        if stage_id == 2:
            return 3 + block_id // 3
        return num_max_layer
    return num_max_layer + 1


def v1_layer_id_stage_wise(var_name: str, num_max_layer: int) -> int:
    if var_name.startswith('backbone.downsample_layers'):
        return 0
    if var_name.startswith('backbone.stages'):
        return int(var_name.split('.')[2]) + 1
    return num_max_layer - 1


def v1_layer_id(var_name: str, decay_type: str, num_layers: int) -> int:
    if decay_type == 'layer_wise':
        return v1_layer_id_layer_wise(var_name, num_layers)
    return v1_layer_id_stage_wise(var_name, num_layers + 2)


def v1_lr_scale(var_name: str, decay_type: str, num_layers: int, decay_rate: float) -> float:
    return decay_rate ** (num_layers + 2 - v1_layer_id(var_name, decay_type, num_layers) - 1)


def v1_weight_decay(var_name: str, param: torch.Tensor, base_wd: float) -> float:
    return 0. if param.ndim == 1 or var_name.endswith('.bias') else base_wd


def pytest_configure(config: pytest.Config) -> None:
    # Registered here rather than in an ini file: works the same on pytest 7.0 (the lowest
    # environment) and on the lock's pytest 8, and changes nothing else about the run.
    config.addinivalue_line(
        'markers', 'slow: runs tools in subprocesses, kills and resumes runs, starts distributed '
        'runs or trains at demo scale (seconds to minutes each); deselect with -m "not slow"')


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


def build_demo_detector(tmp_arch=TINY_ARCH):
    """The demo config's Mask R-CNN with a tiny backbone, initialised (no pretrained file)."""
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.model.backbone.arch = tmp_arch
    cfg.model.neck.in_channels = tmp_arch['dims']
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def as_jpeg(png, jpeg, truncate: bool = False, trailer: bytes = b'', mode: str = 'RGB') -> None:
    """Write the picture of ``png`` as a JPEG file: whole, cut short as an interrupted copy
    leaves it (its header still reads), or with bytes appended after the image."""
    Image.open(png).convert(mode).save(jpeg, quality=90)
    data = jpeg.read_bytes()
    if truncate:
        data = data[:len(data) * 2 // 3]
    jpeg.write_bytes(data + trailer)
    with Image.open(jpeg) as image:
        assert image.size == Image.open(png).size


def processes() -> dict:
    """pid -> (parent pid, state, start time) of every process, read from /proc."""
    table = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f'/proc/{entry}/stat').read_text()
        except OSError:  # ended while we looked
            continue
        fields = stat[stat.rindex(')') + 2:].split()  # after "pid (name) "
        table[int(entry)] = (int(fields[1]), fields[0], fields[19])
    return table


def cmdline(pid: int) -> bytes:
    try:
        return Path(f'/proc/{pid}/cmdline').read_bytes()
    except OSError:
        return b''


def alive(pid: int, start_time: str) -> bool:
    """The process is still running (not a zombie, and not a new process with a reused pid)."""
    now = processes().get(pid)
    return now is not None and now[1] != 'Z' and now[2] == start_time


def parent_death_signal() -> int:
    """The signal this process gets when its parent ends (0: none), asked with prctl (Linux)."""
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
    sig = ctypes.c_int(0)
    assert libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0) == 0
    return sig.value


class ToyModel(BaseModel):
    """One linear layer; its loss is the mean squared output (a Runner trains it in
    milliseconds)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


class ToyData(Dataset):
    """Four items: ``inputs`` of item i is ``[i, i]``."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.full((2,), float(index)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_arch():
    return dict(TINY_ARCH)


def trained_like_checkpoint(config, out: Path, seed: int = 0) -> Path:
    """A config's model with every weight moved off its init (GRN gamma / beta too, so GRN is
    not the identity and the heads detect), saved as tools/train.py saves it (the export tests)."""
    from cnxv2_dense.deploy.model_loading import build_model
    torch.manual_seed(seed)  # the modules' own init draws from the global generator
    model = build_model(Config.fromfile(str(config)))
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, value in state.items():
        if value.dtype.is_floating_point and 'running_' not in key:
            scale = 0.5 if ('gamma' in key or 'beta' in key) else 0.05
            value.add_(torch.randn(value.shape, generator=gen) * scale)
    torch.save({'state_dict': state, 'meta': {}}, out)
    return out
