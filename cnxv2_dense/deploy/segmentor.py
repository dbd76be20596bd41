"""An mmseg encoder-decoder segmentor (UperNet) as an exportable module.

``pixels (N, 3, H, W) -> (scores (N, K, H, W) float32, labels (N, H, W) int64)``: what mmseg's
``EncoderDecoder.encode_decode`` computes for one whole image (or one sliding-window crop): the
backbone, the neck if any, the decode head's ``forward`` and the bilinear resize of its logits to
the input size (``align_corners`` of the head). The auxiliary head is a training-time head and is
not exported, as at mmseg's test time. Cropping the padding, the resize to the original image
and sliding windows happen outside the graph (:mod:`cnxv2_dense.deploy.runtime`), as mmseg does
them outside ``encode_decode``.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .adaptive_pool import replace_adaptive_pools
from .graph_input import NormalizeInGraph
from .precision import to_network_dtype


class SegmentorForExport(nn.Module):
    """Whole-image forward of an mmseg ``EncoderDecoder``, normalisation included.

    Args:
        segmentor (nn.Module): An mmseg ``EncoderDecoder`` in eval mode; its adaptive average
            pools (UperNet's pyramid pooling) are replaced in place by an exportable equivalent
            (:mod:`cnxv2_dense.deploy.adaptive_pool`), so pass a copy you can spare.
        mean (sequence of float): The config's preprocessor mean, RGB order.
        std (sequence of float): The config's preprocessor std, RGB order.
        dtype (torch.dtype): The network's dtype (float16 for ``--fp16``). Defaults to float32.
    """

    def __init__(self, segmentor: nn.Module, mean: Sequence[float], std: Sequence[float],
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        replace_adaptive_pools(segmentor)
        self.normalize = NormalizeInGraph(mean, std, dtype)
        self.segmentor = to_network_dtype(segmentor, dtype)
        self.align_corners = bool(segmentor.decode_head.align_corners)

    def forward(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = self.segmentor.extract_feat(self.normalize(pixels))
        logits = self.segmentor.decode_head(features).float()
        # (N, K, H/4, W/4) -> (N, K, H, W), as mmseg's decode head resizes to the input size
        scores = F.interpolate(logits, size=pixels.shape[2:], mode='bilinear',
                               align_corners=self.align_corners)
        return scores, scores.argmax(dim=1)
