import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from cnxv2_dense.utils import allow_mmengine_checkpoints

# allow_mmengine_checkpoints() extends torch's weights-only allow-list, which exists from torch
# 2.4 (before 2.6 torch.load does not default to weights-only, so mmengine resumes as it is).
# Our own reader's path for older torch is tested in test_torch_compat.py.
pytestmark = pytest.mark.skipif(not hasattr(torch.serialization, 'add_safe_globals'),
                                reason='torch < 2.4 has no weights-only allow-list to extend')


class _GetattrPayload:
    """Pickles as getattr(HistoryBuffer, name), as mmengine's message hub does for 'min'."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return getattr, (HistoryBuffer, self.name)


def test_message_hub_state_loads_weights_only(tmp_path):
    hub = MessageHub.get_instance('safe_load_test')
    for value in (1.0, 2.0, 3.0):
        hub.update_scalar('train/loss', value)
    path = tmp_path / 'ckpt.pth'
    torch.save({'message_hub': hub.state_dict(), 'state_dict': {'w': torch.ones(2)}}, path)
    allow_mmengine_checkpoints()
    loaded = torch.load(path, map_location='cpu', weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 2.0


def test_statistics_methods_resolve(tmp_path):
    allow_mmengine_checkpoints()
    path = tmp_path / 'ok.pth'
    torch.save({'m': _GetattrPayload('min')}, path)
    assert torch.load(path, weights_only=True)['m'] is HistoryBuffer.min


@pytest.mark.parametrize('name', ['__init__', '__class__', 'update'])
def test_any_other_getattr_is_refused(tmp_path, name):
    allow_mmengine_checkpoints()
    path = tmp_path / 'evil.pth'
    torch.save({'m': _GetattrPayload(name)}, path)
    with pytest.raises(pickle.UnpicklingError, match='Refusing getattr'):
        torch.load(path, weights_only=True)


def test_arbitrary_classes_stay_refused(tmp_path):
    allow_mmengine_checkpoints()
    path = tmp_path / 'obj.pth'
    torch.save({'m': _GetattrPayload}, path)  # a class that is not allow-listed
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
