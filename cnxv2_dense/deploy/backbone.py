"""The backbone alone as an exportable module: pixels in, its ``out_indices`` feature maps out."""
from typing import Sequence, Tuple

import torch
from torch import nn

from .graph_input import NormalizeInGraph
from .precision import to_network_dtype


class BackboneForExport(nn.Module):
    """``pixels (N, 3, H, W) float32 RGB 0..255 -> (features_0, ..., features_k)``, float32.

    Args:
        backbone (nn.Module): A :class:`~cnxv2_dense.ConvNeXtV2` (or any module returning a
            tuple of feature maps), in eval mode.
        mean (sequence of float): The config's preprocessor mean, RGB order.
        std (sequence of float): The config's preprocessor std, RGB order.
        dtype (torch.dtype): The network's dtype (float16 for ``--fp16``). Defaults to float32.
    """

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float],
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.normalize = NormalizeInGraph(mean, std, dtype)
        self.backbone = to_network_dtype(backbone, dtype)

    def forward(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        features = self.backbone(self.normalize(pixels))
        return tuple(f.float() for f in features)
