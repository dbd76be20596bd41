"""What every exported graph does first: normalise raw pixels, then cast to the graph's dtype.

Exported models take what a user has in hand, not what the toolbox's data preprocessor makes:
``(N, 3, H, W)`` float32 pixel values in 0 ... 255, **RGB** order, already resized (and padded,
where the model needs it) as the config's test pipeline does. The config's ``mean`` / ``std``
(in RGB order, as mmdet / mmseg apply them after ``bgr_to_rgb``) are constants inside the graph,
so a deployed model needs nothing but the pixels. The metadata file beside the model says so
(:mod:`cnxv2_dense.deploy.metadata`).

Padding: mmdet's and mmseg's preprocessors pad *after* normalising, with 0. Raw pixels padded
with the mean normalise to exactly 0, so the runner pads with the mean (the metadata records it).
"""
from typing import Sequence

import torch
from torch import nn


class NormalizeInGraph(nn.Module):
    """``(x - mean) / std`` per channel, then a cast to ``dtype`` (float16 for ``--fp16``).

    Args:
        mean (sequence of float): Per-channel mean, RGB order.
        std (sequence of float): Per-channel std, RGB order.
        dtype (torch.dtype): The dtype the network after it runs in. Defaults to float32.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.dtype = dtype

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # (N, 3, H, W) float32 RGB 0..255 -> normalised, in the network's dtype
        return ((pixels - self.mean) / self.std).to(self.dtype)
