"""float16 export: the network in float16, the statistics that overflow it in float32.

GRN's L2 norm over H x W squares every activation (above 256, a square is past float16's
65504) and LayerNorm sums squares over the channels: official ConvNeXt-V2 issue #66 (TensorRT
fp16 "detects nothing") and keras_cv_attention_models #129 (NaN) are this overflow. The backbone's
:class:`~cnxv2_dense.models.layers.GRN` and LayerNorms already compute in float32 whatever the
input dtype; keeping their few parameters in float32 too makes the exported graph cast the
activation to float32 around exactly these layers (``Cast`` nodes in, float32 reductions,
``Cast`` back) while every convolution and linear layer runs in float16.
"""
import torch
from torch import nn

from ..models.layers import GRN, LayerNorm2d, LayerNormLast

FP32_LAYERS = (GRN, LayerNorm2d, LayerNormLast)


def to_network_dtype(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module.to(dtype)``, except that GRN and LayerNorm parameters stay float32 (in place)."""
    module.to(dtype)
    if dtype != torch.float32:
        for layer in module.modules():
            if isinstance(layer, FP32_LAYERS):
                layer.float()
    return module
