"""Loading pretrained weights, in any supported layout, into a ConvNeXt V2 backbone.

:func:`load_pretrained_backbone` reads a checkpoint safely (:mod:`.reading`), converts it
(:mod:`.formats`), checks it against the backbone's shapes and loads it, logging what happened.
:class:`PretrainedBackbone` is the mmengine weight initializer that runs it for
``init_cfg=dict(type='Pretrained', checkpoint=...)`` (see ``ConvNeXtV2``'s ``default_init_cfg``).
"""
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

from mmengine.logging import MMLogger, print_log
from mmengine.model.weight_init import PretrainedInit, update_init_info
from torch import nn

from ..registry import WEIGHT_INITIALIZERS
from .formats import FORMATS, CheckpointFormatError, convert_state_dict, summarise_keys
from .reading import extract_state_dict, read_checkpoint, resolve_checkpoint
from .shapes import CheckpointShapeError


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


@WEIGHT_INITIALIZERS.register_module()
class PretrainedBackbone(PretrainedInit):
    """mmengine weight initializer: :func:`load_pretrained_backbone` on the module it is given.

    ``ConvNeXtV2`` turns ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` into
    ``type='cnxv2_dense.PretrainedBackbone'`` with the same arguments, so the usual config line
    loads any layout of ``docs/checkpoints.md``.

    Args:
        checkpoint (str): File or ``http(s)://`` URL.
        prefix (str, optional): Keep only keys under this prefix (see
            :func:`load_pretrained_backbone`). Defaults to None.
        map_location (str): Accepted for mmengine's ``Pretrained`` arguments; weights are always
            read to the CPU, then copied into the module wherever it lives. Defaults to 'cpu'.
    """

    def __init__(self, checkpoint: str, prefix: Optional[str] = None,
                 map_location: str = 'cpu') -> None:
        super().__init__(checkpoint, prefix=prefix, map_location=map_location)

    def __call__(self, module: nn.Module) -> None:
        load_pretrained_backbone(module, self.checkpoint, prefix=self.prefix)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return f'{type(self).__name__}: load from {self.checkpoint}'
