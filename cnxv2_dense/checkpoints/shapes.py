"""Architecture of a backbone state dict, read off its keys and shapes, and the shape check.

Used by the converter (:mod:`cnxv2_dense.checkpoints.formats`) to refuse weights of another
arch with a message naming both, by the FCMAE export to record the arch, and by the tools.
"""
import re
from typing import Any, List, Mapping, Optional, Tuple

import torch

from ..arch import ARCH_SETTINGS, NUM_STAGES

Shape = Tuple[int, ...]

_STAGE_BLOCK = re.compile(r'^stages\.([0-3])\.(\d+)\.')


class CheckpointShapeError(ValueError):
    """Converted weights that do not fit the target backbone (another arch)."""


def shape_of(value: Any) -> Shape:
    """The shape of a tensor (or of a ``torch.Size`` / tuple) as a tuple of ints."""
    return tuple(int(s) for s in (value.shape if hasattr(value, 'shape') else value))


def arch_of(state_dict: Mapping[str, Any]) -> Tuple[List[int], List[int]]:
    """``(depths, dims)`` read off a backbone state dict (0 where a stage is absent).

    Args:
        state_dict (Mapping[str, Tensor | torch.Size]): Weights (or shapes) under our names.
    """
    depths = [0] * NUM_STAGES
    for key in state_dict:
        match = _STAGE_BLOCK.match(key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            depths[stage] = max(depths[stage], block + 1)
    dims = []
    for i in range(NUM_STAGES):
        candidates = (f'stages.{i}.0.dwconv.weight', f'downsample_layers.{i}.{0 if i == 0 else 1}'
                      '.weight', f'stages.{i}.0.norm.weight')
        found = [shape_of(state_dict[k])[0] for k in candidates if k in state_dict]
        dims.append(found[0] if found else 0)
    return depths, dims


def guess_arch(state_dict: Mapping[str, Any]) -> Optional[str]:
    """The published variant (``ARCH_SETTINGS`` name) a backbone state dict most likely is.

    Matches depths and dims; failing that, dims alone (a truncated or extended model).

    Args:
        state_dict (Mapping[str, Tensor | torch.Size]): Weights (or shapes) under our names.

    Returns:
        str | None: ``'atto'`` ... ``'huge'``, or None for a custom width.
    """
    depths, dims = arch_of(state_dict)
    for name, setting in ARCH_SETTINGS.items():
        if setting['dims'] == dims and setting['depths'] == depths:
            return name
    for name, setting in ARCH_SETTINGS.items():
        if setting['dims'] == dims:
            return name
    return None


def describe_arch(state_dict: Mapping[str, Any]) -> str:
    """``"'base' (depths [...], dims [...])"`` or ``'a custom arch (depths [...], dims [...])'``."""
    depths, dims = arch_of(state_dict)
    name = guess_arch(state_dict)
    label = f"'{name}'" if name else 'a custom arch'
    if name and ARCH_SETTINGS[name]['depths'] != depths:
        label = f"a custom arch as wide as '{name}'"
    return f'{label} (depths {depths}, dims {dims})'


def check_shapes(state_dict: Mapping[str, torch.Tensor],
                 target_shapes: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointShapeError` unless ``state_dict`` fits the target backbone.

    Every key present in both must have the same shape, and every stage present in both must
    have the same number of blocks.

    Args:
        state_dict (Mapping[str, Tensor]): Converted weights under our names.
        target_shapes (Mapping[str, torch.Size]): The target backbone's parameter shapes, e.g.
            ``{k: v.shape for k, v in model.state_dict().items()}``.
    """
    mismatched = [(k, shape_of(v), shape_of(target_shapes[k])) for k, v in state_dict.items()
                  if k in target_shapes and shape_of(v) != shape_of(target_shapes[k])]
    src_depths, _ = arch_of(state_dict)
    dst_depths, _ = arch_of(target_shapes)
    depth_differs = any(s and d and s != d for s, d in zip(src_depths, dst_depths))
    if not mismatched and not depth_differs:
        return
    lines = []
    if mismatched:
        key, src, dst = mismatched[0]
        more = f' (and {len(mismatched) - 1} more tensors)' if len(mismatched) > 1 else ''
        lines.append(f'{key} has shape {src} in the checkpoint but {dst} in the model{more}.')
    if depth_differs:
        lines.append(f'The checkpoint has {src_depths} blocks per stage, the model {dst_depths}.')
    ckpt_name = guess_arch(state_dict)
    if ckpt_name and ARCH_SETTINGS[ckpt_name]['depths'] == src_depths:
        arch = repr(ckpt_name)
    else:
        arch = f'dict(depths={src_depths}, dims={arch_of(state_dict)[1]})'
    hint = f"Build the backbone with arch={arch}, or use a checkpoint of the model's arch."
    raise CheckpointShapeError(
        ' '.join(lines) + f' The checkpoint looks like {describe_arch(state_dict)}; the model is '
        f'{describe_arch(target_shapes)}. {hint}')
