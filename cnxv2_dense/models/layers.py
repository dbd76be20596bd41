"""Small layers of ConvNeXt V2: channel LayerNorm and Global Response Normalization.

Both compute in float32 whatever the input dtype or autocast state: reductions over many
positions overflow in float16 (a known source of AMP / TensorRT NaNs in the reference code),
and the cost of the upcast is negligible next to the convolutions and MLPs around them.

Paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
Woo et al., CVPR 2023 (arXiv 2301.00808).
"""
import re
from contextlib import nullcontext
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def autocast_query() -> Callable[[str], bool]:
    """``device_type -> whether autocast is on for it``, for the installed torch.

    torch >= 2.4 answers ``torch.is_autocast_enabled(device_type)``; older versions (torch 2.1
    is supported) take no argument there and mean CUDA, with one function per other device
    (``is_autocast_cpu_enabled``, ``is_autocast_xpu_enabled``, ...). Looked up once.
    """
    is_enabled = torch.is_autocast_enabled
    try:
        is_enabled('cpu')
        return is_enabled
    except TypeError:  # torch < 2.4
        pass
    per_device = {'cuda': is_enabled}
    for name in dir(torch):
        found = re.fullmatch(r'is_autocast_(\w+)_enabled', name)
        if found:
            per_device[found.group(1)] = getattr(torch, name)

    def legacy(device_type: str) -> bool:
        query = per_device.get(device_type)
        return bool(query()) if query is not None else False
    return legacy


_autocast_enabled = autocast_query()


def fp32_region(x: torch.Tensor):
    """A context in which autocast is off for ``x``'s device, so ops run in the given dtype."""
    if x.device.type != 'meta' and _autocast_enabled(x.device.type):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return nullcontext()


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a channels-last-strided 4-D tensor, else contiguous NCHW."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in _LOW_PRECISION else x


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel axis of an ``(N, C, H, W)`` tensor.

    Subclasses :class:`nn.LayerNorm` so state-dict keys stay ``weight`` / ``bias`` and the fused
    ``F.layer_norm`` kernel does the work. Computes in float32 and returns the input dtype.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # NOTE: keep the input's memory format. The permuted result is channels-last in memory;
        # handed on as is, it reaches ops that assume contiguous NCHW and silently misread it
        # (mmcv's CPU RoIAlign does, which stalls every RoI head behind this backbone).
        memory_format = memory_format_of(x)
        with fp32_region(x):
            x = _upcast(x).permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
            x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
            x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
            return x.to(dtype).contiguous(memory_format=memory_format)


class LayerNormLast(nn.LayerNorm):
    """LayerNorm over the last axis that computes in float32 and returns the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with fp32_region(x):
            x = F.layer_norm(_upcast(x), self.normalized_shape, self.weight, self.bias, self.eps)
            return x.to(dtype)


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2, Eq. 1-3).

    ``out = gamma * (x * N(x)) + beta + x`` where ``G(x)_c`` is the L2 norm of channel ``c`` over
    the spatial positions of one sample and ``N(x)_c = G(x)_c / (mean_c G(x) + eps)``.
    ``gamma`` and ``beta`` start at zero, so a fresh GRN is the identity.

    Masked form (FCMAE pretraining): given a ``visible`` mask, ``G(x)`` is the L2 norm over the
    visible positions of each sample only, as in the official JAX model printed in the official
    TRAINING.md (the code the paper's results were trained with). Every position of the output is
    computed with that statistic; what masked positions hold afterwards is the caller's business
    (the block zeroes them).

    Args:
        num_channels (int): Number of channels ``C``.
        eps (float): Added to the channel mean of ``G``. Defaults to 1e-6.
        channels_last (bool): Input layout ``(N, H, W, C)`` if True (as inside a block),
            else ``(N, C, H, W)``. Defaults to True.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, channels_last: bool = True) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.channels_last = channels_last
        # Reduction axes and the broadcast shape of gamma/beta are fixed by the layout.
        self.spatial_dims = (1, 2) if channels_last else (2, 3)
        self.channel_dim = -1 if channels_last else 1
        self.param_shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
        # Stored as (C,), like timm and mmpretrain (the official code uses (1, 1, 1, C)).
        self.gamma = nn.Parameter(torch.zeros(num_channels))
        self.beta = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Apply GRN.

        Args:
            x (Tensor): ``(N, H, W, C)`` (channels_last) or ``(N, C, H, W)``.
            visible (Tensor, optional): 1 at positions that count in ``G(x)``, 0 elsewhere;
                broadcastable to ``x`` with size 1 on the channel axis (e.g. ``(N, H, W, 1)``).
                Defaults to None: every position counts.

        Returns:
            Tensor: Same shape and dtype as ``x``.
        """
        dtype = x.dtype
        with fp32_region(x):
            x = _upcast(x)
            counted = x if visible is None else x * _upcast(visible)
            gx = torch.linalg.vector_norm(counted, ord=2, dim=self.spatial_dims, keepdim=True)
            nx = gx / (gx.mean(dim=self.channel_dim, keepdim=True) + self.eps)
            # x + gamma * x * N + beta == x * (1 + gamma * N) + beta: the per-channel scale is a
            # small (N, 1, 1, C) tensor, so only one pass over the full activation is needed.
            scale = self.gamma.view(self.param_shape) * nx + 1.0
            out = torch.addcmul(self.beta.view(self.param_shape), x, scale)
            return out.to(dtype)

    def extra_repr(self) -> str:
        return f'{self.num_channels}, eps={self.eps}, channels_last={self.channels_last}'
