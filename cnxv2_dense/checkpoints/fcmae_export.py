"""Export the encoder of an FCMAE checkpoint as a ConvNeXt V2 backbone checkpoint.

The FCMAE model (:class:`cnxv2_dense.FCMAE`) holds its encoder as ``encoder.*`` with the
backbone's own parameter names; the decoder (``proj``, ``mask_token``, ``decoder``, ``pred``)
is not needed downstream. The export keeps the encoder, records its arch and the training
progress, and writes a file that ``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads.
"""
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..utils.atomic_file import atomic_output
from .formats import DECODER_KEY, split_prefix, strip_ddp_prefix
from .reading import extract_state_dict, read_checkpoint
from .shapes import arch_of

ENCODER_PREFIX = 'encoder.'
# Meta entries of an mmengine checkpoint carried into the export.
CARRIED_META = ('epoch', 'iter', 'mmengine_version', 'experiment_name')


def fcmae_to_backbone_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The encoder weights of an FCMAE state dict as :class:`ConvNeXtV2` keys.

    Keeps the ``encoder.*`` entries with the prefix stripped (``module.encoder.*`` from an
    unwrapped DDP model too) and drops the decoder. Idempotent: a state dict that already has
    backbone keys comes back without any decoder keys, otherwise unchanged.

    Args:
        state_dict (dict[str, Tensor]): FCMAE weights.

    Returns:
        dict[str, Tensor]: ``downsample_layers.*`` / ``stages.*`` weights.

    Raises:
        ValueError: Neither ``encoder.*`` nor backbone keys are present.
    """
    state = strip_ddp_prefix(state_dict)
    if split_prefix(list(state)) == ENCODER_PREFIX:
        return {k[len(ENCODER_PREFIX):]: v for k, v in state.items()
                if k.startswith(ENCODER_PREFIX)}
    if any(k.startswith(('downsample_layers.', 'stages.')) for k in state):
        return {k: v for k, v in state.items() if not DECODER_KEY.match(k)}
    raise ValueError('No FCMAE encoder weights (keys starting with "encoder.") found; first '
                     f'keys: {sorted(state)[:5]}')


def export_fcmae_backbone(checkpoint: Union[str, Path], out_file: Union[str, Path],
                          meta: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write the encoder of an FCMAE checkpoint as a backbone checkpoint.

    The result ``{'state_dict': <ConvNeXtV2 keys>, 'meta': {...}}`` loads with
    ``ConvNeXtV2(init_cfg=dict(type='Pretrained', checkpoint=out_file))`` and in the detection /
    segmentation configs; only the output norms ``norm{i}`` are missing (FCMAE has none).

    Args:
        checkpoint (str | Path): An mmengine checkpoint of :class:`FCMAE` (or its state dict),
            read safely (:func:`~cnxv2_dense.checkpoints.read_checkpoint`).
        out_file (str | Path): Where to write the backbone checkpoint.
        meta (dict, optional): Extra meta entries (plain Python values).

    Returns:
        dict: The object written.
    """
    raw = read_checkpoint(checkpoint)
    state = fcmae_to_backbone_state_dict(extract_state_dict(raw))
    source_meta = raw.get('meta', {}) if isinstance(raw, dict) else {}
    depths, dims = arch_of(state)
    info: Dict[str, Any] = dict(
        pretrain='FCMAE', model='cnxv2_dense.ConvNeXtV2', arch=dict(depths=depths, dims=dims),
        source_checkpoint=str(checkpoint), exported=time.strftime('%Y-%m-%d %H:%M:%S'))
    if isinstance(source_meta, dict):
        info.update({key: source_meta[key] for key in CARRIED_META if key in source_meta})
    info.update(meta or {})
    result = dict(state_dict={k: v.detach().cpu().clone() for k, v in state.items()}, meta=info)
    with atomic_output(out_file) as tmp:  # a kill while writing leaves no half-written file
        torch.save(result, tmp)
    return result
