"""Safe reading of checkpoint files (local or downloaded) and of the weights inside them.

Checkpoints are pickles and unpickling can run code, so they are read with
``torch.load(weights_only=True)`` (or as ``.safetensors``); a file that needs arbitrary objects is
refused with :class:`UnsafeCheckpointError`, never retried unsafely. What is read is converted by
:mod:`cnxv2_dense.checkpoints.formats` and loaded by :mod:`cnxv2_dense.checkpoints.loading`;
see ``docs/checkpoints.md``.
"""
import argparse
import pickle
import re
import urllib.parse
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from mmengine.logging import MMLogger, print_log

from ..utils.safe_load import mmengine_checkpoint_globals
from .formats import CheckpointFormatError

STATE_DICT_KEYS = ('state_dict', 'model', 'module', 'model_ema', 'state_dict_ema')
# Parts of torch's (and the restricted getattr's) refusals of objects that are not plain data.
_UNSAFE_SIGNS = ('GLOBAL', 'unrecognized function', 'Can only build', 'getattr(')
# A .safetensors file starts with the 8-byte little-endian length of its JSON header.
_SAFETENSORS_MAX_HEADER = 100 * 2 ** 20


class UnsafeCheckpointError(ValueError):
    """A checkpoint whose unpickling needs objects beyond tensors and plain containers."""


class UnreadableCheckpointError(ValueError):
    """A file that is not a readable checkpoint (empty, truncated, damaged, another format)."""


def checkpoint_safe_globals() -> List[Any]:
    """The extra objects a weights-only load of a known checkpoint kind may build.

    mmengine training checkpoints (their message hub; see
    :func:`~cnxv2_dense.utils.mmengine_checkpoint_globals`) and official ConvNeXt V2 training
    checkpoints (``args``, an ``argparse.Namespace``: a plain attribute bag that runs no code when
    unpickled).
    """
    return [*mmengine_checkpoint_globals(), argparse.Namespace]


def _global_name(entry: Union[Any, Tuple[Any, str]]) -> Tuple[str, Any]:
    """``(name pickle writes for it, object)`` of an allow-list entry, as torch names them."""
    if isinstance(entry, tuple):
        obj, name = entry
        return name, obj
    return f'{entry.__module__}.{entry.__qualname__}', entry


def _plain_data_globals() -> Dict[str, Any]:
    """Plain data that newer torch's weights-only unpickler builds but torch 2.1's does not:
    bytes as pickle protocol 2 writes them (``_codecs.encode``, e.g. the data of the numpy
    arrays in mmengine's message hub), sets, complex numbers, counters, devices and dtypes."""
    import _codecs
    import collections
    allowed = {'_codecs.encode': _codecs.encode, 'builtins.set': set,
               'builtins.bytearray': bytearray, 'builtins.complex': complex,
               'collections.Counter': collections.Counter, 'torch.device': torch.device}
    allowed.update((f'torch.{name}', value) for name, value in vars(torch).items()
                   if isinstance(value, torch.dtype))
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds only allow-listed globals (the pickle docs' "Restricting
    Globals"): the plain data of torch's own weights-only set (as newer torch has it) plus
    :func:`checkpoint_safe_globals`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from torch._weights_only_unpickler import _get_allowed_globals
        self.allowed: Dict[str, Any] = {**_plain_data_globals(), **_get_allowed_globals()}
        self.allowed.update(_global_name(entry) for entry in checkpoint_safe_globals())

    def find_class(self, module: str, name: str) -> Any:
        full_name = f'{module}.{name}'
        if full_name not in self.allowed:
            raise pickle.UnpicklingError(
                f'Unsupported global: GLOBAL {full_name} was not an allowed global')
        return self.allowed[full_name]


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# What torch.load needs of a ``pickle_module``: it subclasses ``Unpickler`` and calls ``load``.
RESTRICTED_PICKLE = SimpleNamespace(__name__='cnxv2_dense_restricted_pickle',
                                    Unpickler=_RestrictedUnpickler, load=_restricted_load,
                                    UnpicklingError=pickle.UnpicklingError)


def _load_weights_only(path: Path) -> Any:
    """``torch.load`` of tensors, plain containers and :func:`checkpoint_safe_globals` only."""
    safe_globals: Optional[Callable] = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is not None:
        with safe_globals(checkpoint_safe_globals()):
            return torch.load(path, map_location='cpu', weights_only=True)
    # NOTE: torch < 2.5 (2.1 is supported) has no way to extend the weights-only allow-list for
    # one call, and its weights-only unpickler refuses mmengine's message hub and official
    # training checkpoints' `args`. The same allow-list is enforced here by a restricted
    # unpickler in place of pickle; torch still rebuilds the tensors and storages.
    return torch.load(path, map_location='cpu', weights_only=False,
                      pickle_module=RESTRICTED_PICKLE)


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], 'little')
    return 2 <= header_len <= _SAFETENSORS_MAX_HEADER and head[8:9] == b'{'


def _describe_content(head: bytes) -> str:
    if head.startswith(b'PK\x03\x04'):
        return 'a zip archive that is truncated, damaged or not a PyTorch checkpoint'
    if head[:1] == b'\x80':
        return 'a pickle that is truncated, damaged or not written by torch.save'
    if head and all(32 <= b < 127 or b in b'\t\r\n' for b in head):
        return f'text (it starts with {head[:24].decode("ascii")!r})'
    return 'binary data in no checkpoint format'


def _first_line(err: BaseException) -> str:
    """The informative part of an exception's message, short."""
    text = str(err).strip()
    # NOTE: torch's weights-only errors open with advice to retry with weights_only=False, which
    # is wrong for a damaged file and unsafe for an untrusted one; keep only the actual reason.
    reason = re.search(r'WeightsUnpickler error:\s*(\S.*)', text)
    line = reason.group(1) if reason else (text.splitlines()[0] if text else type(err).__name__)
    if len(line) > 160 and '. ' in line:
        line = line.split('. ')[0]
    return line


def read_checkpoint(path: Union[str, Path]) -> Any:
    """Read a checkpoint file safely and return the object stored in it.

    ``.safetensors`` files (recognised by suffix or content) are read with safetensors; anything
    else with ``torch.load(weights_only=True)``, which also allows the few harmless objects of
    mmengine and official ConvNeXt V2 training checkpoints (:func:`checkpoint_safe_globals`);
    torch < 2.5 cannot widen that allow-list per call, and gets the same allow-list from a
    restricted unpickler instead.

    Args:
        path (str | Path): The checkpoint file.

    Returns:
        Any: The stored object, usually a dict.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        UnsafeCheckpointError: Unpickling would need other Python objects (possibly code).
        UnreadableCheckpointError: An empty, truncated, damaged or non-checkpoint file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'Checkpoint not found: {path}')
    with path.open('rb') as f:
        head = f.read(64)
    if not head:
        raise UnreadableCheckpointError(f'{path} is empty, not a checkpoint')
    if path.suffix == '.safetensors' or _looks_like_safetensors(head):
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device='cpu')
        except Exception as err:  # safetensors raises its own error types
            raise UnreadableCheckpointError(
                f'{path} is not a readable .safetensors file (truncated or damaged?): '
                f'{_first_line(err)}') from err
    try:
        return _load_weights_only(path)
    except torch.serialization.pickle.UnpicklingError as err:
        message = str(err)
        # NOTE: torch raises UnpicklingError both for a forbidden global (the safety refusal)
        # and for bytes that are no pickle it understands; only the first is a safety matter.
        if any(sign in message for sign in _UNSAFE_SIGNS):
            found = re.search(r'GLOBAL (\S+?)(?: was| whose|$)|(getattr\(.*?\))', message,
                              re.MULTILINE)
            needs = f' (it needs {found.group(1) or found.group(2)})' if found else ''
            raise UnsafeCheckpointError(
                f'{path} was refused: it holds Python objects other than tensors and plain '
                f'containers{needs}, and unpickling them could run arbitrary code. If you trust '
                'the file, re-save only its weights in a separate session: '
                'torch.save(torch.load(p, weights_only=False)["state_dict"], "weights.pth").'
            ) from None  # NOTE: torch's own message opens with "retry with weights_only=False"
        raise UnreadableCheckpointError(
            f'{path} is not a PyTorch checkpoint: it is {_describe_content(head)} '
            f'(torch said: {_first_line(err)})') from err
    except Exception as err:  # RuntimeError (zip), EOFError, KeyError, struct.error, ...
        raise UnreadableCheckpointError(
            f'{path} is not a readable PyTorch checkpoint: it is {_describe_content(head)} '
            f'(torch said: {type(err).__name__}: {_first_line(err)})') from err


def resolve_checkpoint(checkpoint: Union[str, Path]) -> Path:
    """Local path of a checkpoint; an ``http(s)://`` URL is downloaded once into torch's cache.

    The cache is ``torch.hub.get_dir()/checkpoints``, the one ``load_state_dict_from_url`` and
    mmengine use, so a file fetched by either is reused. The download is then read like any file
    (safely, by :func:`read_checkpoint`).

    Args:
        checkpoint (str | Path): A file path or an ``http://`` / ``https://`` URL.
    """
    text = str(checkpoint)
    if not text.startswith(('http://', 'https://')):
        return Path(checkpoint)
    cache = Path(torch.hub.get_dir()) / 'checkpoints'
    target = cache / Path(urllib.parse.urlparse(text).path).name
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        print_log(f'Downloading {text} to {target}', logger=MMLogger.get_current_instance())
        torch.hub.download_url_to_file(text, str(target), progress=False)
    return target


def extract_state_dict(obj: Any) -> Dict[str, torch.Tensor]:
    """Return the tensor dict inside a checkpoint object (``state_dict``/``model`` or itself)."""
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f'A checkpoint must be a dict, got {type(obj).__name__}')
    for key in STATE_DICT_KEYS:
        if key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj
