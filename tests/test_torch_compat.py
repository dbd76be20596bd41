"""The paths kept for older torch (2.1 is the oldest supported), exercised on the installed one
by taking away what older versions lack.

- ``torch.serialization.safe_globals`` (torch >= 2.5): without it, checkpoints are read through
  a restricted unpickler that enforces the same allow-list.
- ``torch.is_autocast_enabled(device_type)`` (torch >= 2.4): before that it took no argument
  and meant CUDA, with ``is_autocast_cpu_enabled`` for the CPU.
"""
import argparse
import os
import pickle
from collections import OrderedDict

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from cnxv2_dense.checkpoints import UnsafeCheckpointError, read_checkpoint
from cnxv2_dense.models import LayerNorm2d, layers


def training_checkpoint():
    """What mmengine's and the official training scripts save besides weights."""
    hub = MessageHub.get_instance('torch_compat_test')
    for value in (1.0, 2.0, 3.0):
        hub.update_scalar('train/loss', value)
    return {
        'state_dict': OrderedDict(weight=torch.nn.Parameter(torch.randn(4, 3)),
                                  bias=torch.arange(4, dtype=torch.float16)),
        'message_hub': hub.state_dict(),
        'args': argparse.Namespace(lr=4e-3, input_size=224, model='convnextv2_atto'),
        'epoch': 3,
    }


def _without_safe_globals(monkeypatch):
    monkeypatch.delattr(torch.serialization, 'safe_globals', raising=False)  # absent < 2.5


@pytest.mark.parametrize('zipfile', [True, False])
def test_training_checkpoint_reads_without_safe_globals(tmp_path, monkeypatch, zipfile):
    saved = training_checkpoint()
    path = tmp_path / 'ckpt.pth'
    torch.save(saved, path, _use_new_zipfile_serialization=zipfile)
    _without_safe_globals(monkeypatch)
    loaded = read_checkpoint(path)
    assert isinstance(loaded['state_dict'], OrderedDict)
    assert isinstance(loaded['state_dict']['weight'], torch.nn.Parameter)
    assert torch.equal(loaded['state_dict']['weight'], saved['state_dict']['weight'])
    assert loaded['state_dict']['bias'].dtype == torch.float16
    assert torch.equal(loaded['state_dict']['bias'], saved['state_dict']['bias'])
    assert loaded['args'] == saved['args']
    assert loaded['epoch'] == 3
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == 2.0 and buffer.max() == 3.0


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


class _GetattrPayload:
    """Pickles as getattr(HistoryBuffer, name), as the message hub does for 'min'."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


def test_code_is_refused_without_safe_globals(tmp_path, monkeypatch):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'x': _RunsCode(marker)}, path)
    _without_safe_globals(monkeypatch)
    with pytest.raises(UnsafeCheckpointError, match=r'it needs (posix|nt)\.system'):
        read_checkpoint(path)
    assert not marker.exists()


def test_getattr_beyond_history_buffer_statistics_is_refused(tmp_path, monkeypatch):
    path = tmp_path / 'getattr.pth'
    torch.save({'f': _GetattrPayload('__init__')}, path)
    allowed = tmp_path / 'min.pth'
    torch.save({'f': _GetattrPayload('min')}, allowed)
    _without_safe_globals(monkeypatch)
    with pytest.raises(UnsafeCheckpointError, match='getattr'):
        read_checkpoint(path)
    assert read_checkpoint(allowed)['f'] is HistoryBuffer.min


def test_both_paths_read_the_same(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    torch.save(training_checkpoint(), path)
    current = read_checkpoint(path)
    _without_safe_globals(monkeypatch)
    legacy = read_checkpoint(path)
    assert pickle.dumps(current['args']) == pickle.dumps(legacy['args'])
    for key, tensor in current['state_dict'].items():
        assert torch.equal(legacy['state_dict'][key], tensor)


def legacy_autocast_query(monkeypatch):
    """The query ``autocast_query`` builds when torch has the autocast API of torch < 2.4:
    ``is_autocast_enabled()`` without a device argument, meaning CUDA, and
    ``is_autocast_cpu_enabled()``. (Patched only while the query is built: torch.autocast
    itself calls the modern form.)"""
    installed = layers.autocast_query()  # the installed torch's answer, whatever its API
    with monkeypatch.context() as patch:
        patch.setattr(torch, 'is_autocast_enabled', lambda: installed('cuda'))
        patch.setattr(torch, 'is_autocast_cpu_enabled', lambda: installed('cpu'))
        return layers.autocast_query()


def test_autocast_query_on_legacy_torch(monkeypatch):
    query = legacy_autocast_query(monkeypatch)
    assert query is not torch.is_autocast_enabled
    assert query('cpu') is False and query('cuda') is False
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert query('cpu') is True
        assert query('cuda') is False
    assert query('no_such_device') is False


def test_fp32_region_under_legacy_autocast(monkeypatch):
    installed = layers.autocast_query()
    # The query LayerNorm2d / GRN use is chosen at import; choose it again for "old" torch.
    # (The module's former call, torch.is_autocast_enabled('cpu'), raises TypeError there.)
    monkeypatch.setattr(layers, '_autocast_enabled', legacy_autocast_query(monkeypatch))
    norm = LayerNorm2d(8)
    x = torch.randn(2, 8, 4, 4)
    expected = norm(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        with layers.fp32_region(x):
            assert installed('cpu') is False  # switched off in the region
        assert installed('cpu') is True
        out = norm(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
