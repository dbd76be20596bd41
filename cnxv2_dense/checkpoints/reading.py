"""Safe loading of pretrained weights, in any supported layout, into the ConvNeXt V2 backbone.

Checkpoints are pickles and unpickling can run code, so they are read with
``torch.load(weights_only=True)`` (or as ``.safetensors``); a file that needs arbitrary objects is
refused with :class:`UnsafeCheckpointError`, never retried unsafely. The layouts that can be
loaded (official, MinkowskiEngine, timm, mmpretrain, Hugging Face, this project's own) are
converted by :mod:`cnxv2_dense.checkpoint_formats`; see ``docs/checkpoints.md``.
"""
import argparse
import logging
import re
import urllib.parse
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

from .checkpoint_formats import (FORMATS, CheckpointFormatError, CheckpointShapeError,
                                 convert_state_dict, summarise_keys)
from .utils.safe_load import mmengine_checkpoint_globals

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


def _safe_globals_context() -> ContextManager:
    safe_globals: Optional[Callable] = getattr(torch.serialization, 'safe_globals', None)
    return safe_globals(checkpoint_safe_globals()) if safe_globals else nullcontext()


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
    mmengine and official ConvNeXt V2 training checkpoints (:func:`checkpoint_safe_globals`).

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
        with _safe_globals_context():
            return torch.load(path, map_location='cpu', weights_only=True)
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


@dataclass
class PretrainedLoadReport:
    """What :func:`load_pretrained_backbone` did.

    Attributes:
        source_format (str): Detected layout (a key of ``FORMATS``).
        num_loaded (int): Tensors copied into the backbone.
        missing_keys (list[str]): Backbone keys the checkpoint did not provide (left at init).
        unexpected_keys (list[str]): Checkpoint keys that fit no backbone parameter (ignored).
        dropped_keys (list[str]): Non-backbone keys left out on purpose (decoder, head, neck...).
    """

    source_format: str
    num_loaded: int
    missing_keys: List[str] = field(default_factory=list)
    unexpected_keys: List[str] = field(default_factory=list)
    dropped_keys: List[str] = field(default_factory=list)


def _is_output_norm(key: str) -> bool:
    return re.match(r'^norm[0-3]\.', key) is not None


def load_pretrained_backbone(backbone: nn.Module, checkpoint: Union[str, Path],
                             prefix: Optional[str] = None) -> PretrainedLoadReport:
    """Load backbone weights from ``checkpoint`` into ``backbone``, reporting what happened.

    Any layout of ``docs/checkpoints.md`` is accepted and converted on the fly. The detected
    format, the number of tensors loaded and every missing or unexpected key are logged in one
    block (warning level when a key other than an output norm ``norm{i}`` is missing or
    unexpected).

    Args:
        backbone (nn.Module): The backbone to fill.
        checkpoint (str | Path): The checkpoint file, or an ``http(s)://`` URL (downloaded once
            into torch's hub cache, see :func:`resolve_checkpoint`).
        prefix (str, optional): Keep only keys starting with this prefix, stripped, before the
            layout is detected. Defaults to None: wrappers (``backbone.``, ``encoder.``,
            ``convnextv2.``, ``module.``) are recognised automatically.

    Returns:
        PretrainedLoadReport: The detected format and the key lists.

    Raises:
        CheckpointShapeError: The checkpoint is for another arch (the message names both shapes
            and the variant the checkpoint looks like).
        CheckpointFormatError: No supported layout, or no backbone tensor at all.
        UnsafeCheckpointError, UnreadableCheckpointError: See :func:`read_checkpoint`.
    """
    state = extract_state_dict(read_checkpoint(resolve_checkpoint(checkpoint)))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointFormatError(f'{checkpoint} has no keys starting with {prefix!r}')
    own = backbone.state_dict()
    try:
        result = convert_state_dict(state, target_shapes={k: v.shape for k, v in own.items()})
    except CheckpointShapeError as err:
        raise CheckpointShapeError(f'{checkpoint} does not fit this backbone. {err}') from None
    if not result.state_dict:
        raise CheckpointFormatError(f'{checkpoint} ({result.source_format}) holds no backbone '
                                    f'weights; it has only {summarise_keys(result.dropped_keys)}')
    loaded = backbone.load_state_dict(result.state_dict, strict=False)
    unexpected = sorted(result.unknown_keys + list(loaded.unexpected_keys))
    missing = list(loaded.missing_keys)
    report = PretrainedLoadReport(result.source_format,
                                  len(result.state_dict) - len(loaded.unexpected_keys),
                                  missing, unexpected, result.dropped_keys)
    worrying = [k for k in missing + unexpected if not _is_output_norm(k)]
    print_log('\n'.join([
        f'Pretrained backbone weights from {checkpoint}',
        f'  format: {report.source_format} - {FORMATS[report.source_format]}',
        f'  loaded: {report.num_loaded} of {len(own)} backbone tensors',
        f'  dropped (not backbone): {summarise_keys(report.dropped_keys)}',
        f'  missing (left at init): {", ".join(missing) or "none"}',
        f'  unexpected (ignored): {", ".join(unexpected) or "none"}',
    ]), logger=MMLogger.get_current_instance(), level=logging.WARNING if worrying else logging.INFO)
    return report
