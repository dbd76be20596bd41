"""Small layers of ConvNeXt V2: channel LayerNorm and Global Response Normalization.

Both compute in float32 whatever the input dtype or autocast state: reductions over many
positions overflow in float16 (a known source of AMP / TensorRT NaNs in the reference code),
and the cost of the upcast is negligible next to the convolutions and MLPs around them.

GRN runs as one autograd node with a hand-derived backward (:func:`grn_fused`); the plain
autograd form (:func:`grn_reference`) is kept as its reference and fallback (docs/speed.md).

Paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders",
Woo et al., CVPR 2023 (arXiv 2301.00808).
"""
import re
from contextlib import nullcontext
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

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


def _param_view(param: torch.Tensor, ndim: int, channel_dim: int) -> torch.Tensor:
    """A ``(C,)`` parameter as a tensor that broadcasts along ``channel_dim`` of an ndim input."""
    shape = [1] * ndim
    shape[channel_dim] = -1
    return param.view(shape)


def _grn_scale(gx: torch.Tensor, gamma: torch.Tensor, eps: float, channel_dim: int
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From ``G(x)`` (reduced over positions, kept as size-1 axes): the denominator
    ``d = mean_c G(x) + eps``, ``N(x) = G(x) / d`` and the per-channel scale ``1 + gamma * N``.
    Small tensors, ``(N, 1, 1, C)`` or less."""
    denom = gx.mean(dim=channel_dim, keepdim=True) + eps
    nx = gx / denom
    scale = _param_view(gamma, gx.dim(), channel_dim) * nx + 1.0
    return denom, nx, scale


def _grn_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
                 spatial_dims: Tuple[int, ...], channel_dim: int,
                 visible: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """GRN's forward in float32 (differentiable ops): the output in ``x``'s dtype and ``G(x)``,
    the small statistic the fused backward recomputes the rest from."""
    with fp32_region(x):
        x32 = _upcast(x)
        counted = x32 if visible is None else x32 * _upcast(visible)
        gx = torch.linalg.vector_norm(counted, ord=2, dim=spatial_dims, keepdim=True)
        _, _, scale = _grn_scale(gx, gamma, eps, channel_dim)
        # x + gamma * x * N + beta == x * (1 + gamma * N) + beta: the per-channel scale is a
        # small (N, 1, 1, C) tensor, so only one pass over the full activation is needed.
        out = torch.addcmul(_param_view(beta, x.dim(), channel_dim), x32, scale)
        return out.to(x.dtype), gx


def grn_reference(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
                  spatial_dims: Tuple[int, ...], channel_dim: int,
                  visible: Optional[torch.Tensor] = None) -> torch.Tensor:
    """GRN written with differentiable torch ops; autograd derives its backward.

    The reference for :func:`grn_fused` (same arguments, same forward ops, so the same outputs
    bit for bit) and the path for the cases the fused one does not cover (a ``visible`` mask
    that requires grad, double backward). Computes in float32, returns ``x``'s dtype.
    """
    return _grn_forward(x, gamma, beta, eps, spatial_dims, channel_dim, visible)[0]


class _FusedGRN(torch.autograd.Function):
    """GRN with an analytic backward (see :func:`grn_fused`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                visible: Optional[torch.Tensor], eps: float, spatial_dims: Tuple[int, ...],
                channel_dim: int) -> torch.Tensor:
        out, gx = _grn_forward(x, gamma, beta, eps, spatial_dims, channel_dim, visible)
        # NOTE: the one full-size tensor kept for backward is x in its own dtype (under autocast
        # a float16 x is kept as such, half the bytes of the float32 copy autograd would keep).
        # G(x) is small; everything else is recomputed from it.
        ctx.save_for_backward(x, gx, gamma, visible)
        ctx.eps, ctx.spatial_dims, ctx.channel_dim = eps, spatial_dims, channel_dim
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, gx, gamma, visible = ctx.saved_tensors
        need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
        spatial_dims, channel_dim = ctx.spatial_dims, ctx.channel_dim % x.dim()
        other_dims = [d for d in range(x.dim()) if d != channel_dim]
        grad_x = grad_gamma = grad_beta = None
        with fp32_region(x):
            x32, dy = _upcast(x), _upcast(grad_out)
            denom, nx, scale = _grn_scale(gx, gamma, ctx.eps, channel_dim)
            if need_beta:  # out = x * scale + beta
                grad_beta = dy.sum(dim=other_dims).to(gamma.dtype)
            if need_x or need_gamma:
                # dL/dscale_c, per sample: sum over positions of dy * x (N, 1, 1, C)
                grad_scale = (dy * x32).sum(dim=spatial_dims, keepdim=True)
            if need_gamma:  # scale = 1 + gamma * N
                grad_gamma = (grad_scale * nx).sum(dim=other_dims).to(gamma.dtype)
            if need_x:
                grad_nx = grad_scale * _param_view(gamma, x.dim(), channel_dim)
                # N_c = G_c / (mean_k G_k + eps):
                # dL/dG_c = (dL/dN_c - mean_k(dL/dN_k * N_k)) / (mean_k G_k + eps)
                grad_gx = (grad_nx - (grad_nx * nx).mean(dim=channel_dim, keepdim=True)) / denom
                # G_c = ||m * x_c||: dG_c/dx = m^2 x / G_c, taken as 0 where G_c = 0 (as
                # torch's norm backward does).
                coeff = torch.where(gx > 0, grad_gx / gx, torch.zeros_like(gx))
                grad_x = dy * scale  # the direct term
                if visible is None:
                    grad_x.addcmul_(x32, coeff)
                else:
                    grad_x.addcmul_(x32 * _upcast(visible).square(), coeff)
                grad_x = grad_x.to(x.dtype)
        return grad_x, grad_gamma, grad_beta, None, None, None, None


def grn_fused(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float,
              spatial_dims: Tuple[int, ...], channel_dim: int,
              visible: Optional[torch.Tensor] = None) -> torch.Tensor:
    """GRN as one autograd node with a hand-derived backward.

    The forward is :func:`grn_reference`'s (a norm pass, then one ``addcmul`` pass over ``x``).
    The backward costs one reduction of ``dy * x``, one of ``dy`` (for ``beta``) and one
    ``dy * scale + x * coeff`` over the full tensor, where autograd's graph of the reference
    takes separate passes for each product, sum and the final accumulation of ``dx``; it keeps
    ``x`` alone for backward (plus ``G(x)``, ``(N, 1, 1, C)``, and the mask if any).

    Args:
        x (Tensor): Input of any float dtype; the math runs in float32.
        gamma (Tensor): ``(C,)`` scale of the normalised response.
        beta (Tensor): ``(C,)`` bias.
        eps (float): Added to the channel mean of ``G(x)``.
        spatial_dims (tuple[int, ...]): Axes ``G(x)`` is reduced over (one image's positions).
        channel_dim (int): The channel axis.
        visible (Tensor, optional): Weights of the positions in ``G(x)`` (1 visible, 0 masked),
            size 1 on the channel axis. Not differentiated: pass one that does not require grad.

    Returns:
        Tensor: ``x``'s shape and dtype.
    """
    if visible is not None and visible.requires_grad:
        raise ValueError('grn_fused does not differentiate the visible mask; use grn_reference')
    return _FusedGRN.apply(x, gamma, beta, visible, eps, tuple(spatial_dims), channel_dim)


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

    Runs :func:`grn_fused` (one autograd node, analytic backward) unless ``fused`` is False or
    the mask requires grad; :func:`grn_reference` (autograd's backward) otherwise. Both give
    the same outputs; gradients agree to float32 rounding.

    Args:
        num_channels (int): Number of channels ``C``.
        eps (float): Added to the channel mean of ``G``. Defaults to 1e-6.
        channels_last (bool): Input layout ``(N, H, W, C)`` if True (as inside a block),
            else ``(N, C, H, W)``. Defaults to True.
        fused (bool): Use the fused function; the attribute of the same name may be changed
            later (tests compare both). Defaults to True.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, channels_last: bool = True,
                 fused: bool = True) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.channels_last = channels_last
        self.fused = fused
        # Reduction axes and the broadcast shape of gamma/beta are fixed by the layout.
        self.spatial_dims = (1, 2) if channels_last else (2, 3)
        self.channel_dim = -1 if channels_last else 1
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
        use_fused = self.fused and (visible is None or not visible.requires_grad)
        grn = grn_fused if use_fused else grn_reference
        return grn(x, self.gamma, self.beta, self.eps, self.spatial_dims, self.channel_dim,
                   visible)

    def extra_repr(self) -> str:
        return (f'{self.num_channels}, eps={self.eps}, channels_last={self.channels_last}, '
                f'fused={self.fused}')
