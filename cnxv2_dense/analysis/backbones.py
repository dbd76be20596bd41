"""Backbones for the analysis tools: one built from any checkpoint file, or a random init."""
from typing import Sequence

import torch

from ..checkpoints import arch_of, convert_state_dict, extract_state_dict, read_checkpoint
from ..models import ConvNeXtV2
from ..utils import allow_mmengine_checkpoints


def backbone_from_checkpoint(path: str, out_indices: Sequence[int] = (3,)) -> ConvNeXtV2:
    """A :class:`ConvNeXtV2` with the weights of ``path`` (any layout the loader reads, FCMAE
    training checkpoints included); arch, GRN and layer scale are read off the weights. Every
    block parameter must be present; the output norms are not (FCMAE checkpoints have none), and
    missing ones keep their identity initialisation."""
    allow_mmengine_checkpoints()
    state = convert_state_dict(extract_state_dict(read_checkpoint(path))).state_dict
    depths, dims = arch_of(state)
    use_grn = any('.grn.' in key for key in state)
    layer_scale = any(key.endswith('.gamma') and '.grn.' not in key for key in state)
    model = ConvNeXtV2(arch=dict(depths=depths, dims=dims), out_indices=tuple(out_indices),
                       use_grn=use_grn, layer_scale_init_value=1e-6 if layer_scale else 0.)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith('norm')]
    unexpected = [k for k in unexpected if not k.startswith('norm')]
    if missing or unexpected:
        raise ValueError(f'{path}: the weights do not fit a ConvNeXt V2 '
                         f'{dict(depths=depths, dims=dims)} (missing {missing[:5]}, unexpected '
                         f'{unexpected[:5]})')
    return model


def random_backbone(arch: str, seed: int = 0, out_indices: Sequence[int] = (3,)) -> ConvNeXtV2:
    """A ConvNeXt V2 of size ``arch`` with the backbone's own initialisation, seeded."""
    torch.manual_seed(seed)
    model = ConvNeXtV2(arch=arch, out_indices=tuple(out_indices))
    model.init_weights()
    return model
