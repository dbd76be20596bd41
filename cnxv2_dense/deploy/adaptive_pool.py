"""Adaptive average pooling written as two small matrix products, so that it exports to ONNX.

UperNet's pyramid pooling module pools the last feature map to 1x1, 2x2, 3x3 and 6x6. ONNX has
no adaptive pooling op; the TorchScript exporter turns ``adaptive_avg_pool2d`` into a fixed
``AveragePool`` and refuses when the output size does not divide the input size (3x3 of a 16x16
map at 512 px). Adaptive pooling is linear and separable: output ``(i, j)`` averages rows
``[floor(i*H/h), ceil((i+1)*H/h))`` and the same columns, so it equals ``P_h @ x @ P_w^T`` with
``P`` an averaging matrix built from the input size at run time (``H``, ``W`` may be dynamic).
The sums run in another order than PyTorch's kernel: equal to float rounding.
"""
from typing import Tuple, Union

import torch
from torch import nn


def averaging_matrix(size_in: Union[int, torch.Tensor], size_out: int,
                     dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(size_out, size_in)`` matrix whose row ``i`` averages adaptive pooling's bin ``i``.

    Bin ``i`` covers ``[floor(i * size_in / size_out), ceil((i + 1) * size_in / size_out))``, as
    PyTorch's ``adaptive_avg_pool2d`` defines it.
    """
    out_idx = torch.arange(size_out, device=device)
    start = torch.div(out_idx * size_in, size_out, rounding_mode='floor')
    end = torch.div((out_idx + 1) * size_in + size_out - 1, size_out, rounding_mode='floor')
    positions = torch.arange(size_in, device=device)
    inside = (positions[None, :] >= start[:, None]) & (positions[None, :] < end[:, None])
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


class ExportableAdaptiveAvgPool2d(nn.Module):
    """Drop-in for :class:`nn.AdaptiveAvgPool2d` that exports with dynamic input sizes.

    Args:
        output_size (int | tuple[int, int]): As for :class:`nn.AdaptiveAvgPool2d` (no None).
    """

    def __init__(self, output_size: Union[int, Tuple[int, int]]) -> None:
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if any(s is None for s in output_size):
            raise ValueError('ExportableAdaptiveAvgPool2d needs both output sizes, got '
                             f'{output_size}')
        self.output_size = tuple(int(s) for s in output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_h, out_w = self.output_size
        if out_h == 1 and out_w == 1:  # global pooling: ReduceMean, exact in any exporter
            return x.mean(dim=(2, 3), keepdim=True)
        pool_h = averaging_matrix(x.shape[2], out_h, x.dtype, x.device)
        pool_w = averaging_matrix(x.shape[3], out_w, x.dtype, x.device)
        # (N, C, H, W) -> (N, C, h, W) -> (N, C, h, w)
        return torch.matmul(torch.matmul(pool_h, x), pool_w.transpose(0, 1))


def replace_adaptive_pools(module: nn.Module) -> int:
    """Swap every :class:`nn.AdaptiveAvgPool2d` inside ``module`` (in place) for the exportable
    form; return how many were swapped."""
    swapped = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(module, name, ExportableAdaptiveAvgPool2d(child.output_size))
            swapped += 1
        else:
            swapped += replace_adaptive_pools(child)
    return swapped
