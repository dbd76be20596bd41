"""Feature-collapse measure of the ConvNeXt V2 paper (Sec. 4 / Fig. 3-4, Eq. 1).

For one image and one layer with ``C`` channel maps ``X_1 .. X_C`` (each flattened over the
spatial positions), the mean pairwise cosine distance is

    1 / C^2 * sum_i sum_j (1 - cos(X_i, X_j)) / 2,

0 when every channel is the same map up to a positive scale (collapsed, redundant features) and
``(1 - 1/C) / 2`` when the channels are mutually orthogonal. The paper computes it per image and
averages over images; so does :func:`block_activation_distances`.

The layer is the expansion MLP of every block: the ``4C``-wide activation after GELU, i.e. the
input of GRN in a V2 block. A block without GRN (``use_grn=False``, ConvNeXt V1 style) has the
same tensor at the same place, so models with and without GRN are measured alike. A channel that
is zero everywhere (a dead GELU unit) has no direction; it counts as orthogonal to every other
channel (cosine 0), and to itself as identical (the diagonal term is always 0).
"""
from typing import List

import torch
from torch import nn

EPS = 1e-12


def pairwise_cosine_distance(x: torch.Tensor) -> torch.Tensor:
    """Eq. 1 for each sample of ``x``.

    Args:
        x (Tensor): ``(N, C, P)`` channel maps, ``P`` positions each (any spatial layout
            flattened).

    Returns:
        Tensor: ``(N,)`` mean pairwise cosine distance, in ``[0, (1 - 1/C) / 2]`` for
        non-negative maps and in ``[0, 1]`` in general.
    """
    if x.dim() != 3:
        raise ValueError(f'expected (N, C, P) channel maps, got shape {tuple(x.shape)}')
    x = x.double()
    unit = x / x.norm(dim=-1, keepdim=True).clamp(min=EPS)
    cos = unit @ unit.transpose(1, 2)  # (N, C, C)
    channels = x.shape[1]
    cos.diagonal(dim1=1, dim2=2).fill_(1.)  # a channel is identical to itself, dead or not
    return ((1 - cos) / 2).sum(dim=(1, 2)) / channels ** 2


@torch.no_grad()
def block_activation_distances(backbone: nn.Module, images: torch.Tensor,
                               batch_size: int = 16) -> List[float]:
    """Mean (over images) of Eq. 1 at the post-GELU MLP activation of every block.

    Args:
        backbone (nn.Module): A :class:`~cnxv2_dense.models.ConvNeXtV2` (its ``stages`` hold the
            blocks, each with an ``act`` module applied to the ``(N, H, W, 4C)`` expansion).
        images (Tensor): ``(N, 3, H, W)`` normalised images.
        batch_size (int): Images per forward pass.

    Returns:
        list[float]: One distance per block, in network order.
    """
    blocks = [block for stage in backbone.stages for block in stage]
    sums = [0.] * len(blocks)
    current: List[torch.Tensor] = []

    def hook(module, inputs, output):
        # (N, H, W, 4C) channels-last -> (N, 4C, H*W) channel maps
        current.append(output.flatten(1, 2).transpose(1, 2))

    handles = [block.act.register_forward_hook(hook) for block in blocks]
    was_training = backbone.training
    backbone.eval()
    try:
        for start in range(0, len(images), batch_size):
            current.clear()
            backbone(images[start:start + batch_size])
            if len(current) != len(blocks):
                raise RuntimeError(f'expected one activation per block ({len(blocks)}), got '
                                   f'{len(current)}: is every block run by the forward pass?')
            for index, act in enumerate(current):
                sums[index] += float(pairwise_cosine_distance(act).sum())
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(was_training)
    return [s / len(images) for s in sums]
