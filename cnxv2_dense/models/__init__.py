"""The ConvNeXt V2 backbone, its layers and blocks, and the FCMAE pretraining model.

Imports :mod:`cnxv2_dense.arch` and never :mod:`cnxv2_dense.checkpoints` (see that package).
"""
from ..arch import ARCH_SETTINGS, NUM_STAGES, TOTAL_STRIDE, parse_arch
from .convnextv2 import CHANNELS_LAST_DEVICES, ConvNeXtV2, ConvNeXtV2Block, default_init_cfg
from .fcmae import FCMAE, IMAGENET_MEAN, IMAGENET_STD, VisibleLayout
from .layer_depth import default_num_layers, get_layer_id
from .layers import GRN, LayerNorm2d, LayerNormLast, grn_fused, grn_reference

__all__ = ['ARCH_SETTINGS', 'CHANNELS_LAST_DEVICES', 'NUM_STAGES', 'TOTAL_STRIDE', 'ConvNeXtV2',
           'ConvNeXtV2Block', 'FCMAE', 'GRN', 'IMAGENET_MEAN', 'IMAGENET_STD', 'LayerNorm2d',
           'LayerNormLast', 'VisibleLayout', 'default_init_cfg', 'default_num_layers',
           'get_layer_id', 'grn_fused', 'grn_reference', 'parse_arch']
