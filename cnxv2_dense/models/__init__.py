from .convnextv2 import ARCH_SETTINGS, ConvNeXtV2, ConvNeXtV2Block, parse_arch
from .layer_depth import default_num_layers, get_layer_id
from .layers import GRN, LayerNorm2d, LayerNormLast

__all__ = ['ARCH_SETTINGS', 'ConvNeXtV2', 'ConvNeXtV2Block', 'parse_arch', 'default_num_layers',
           'get_layer_id', 'GRN', 'LayerNorm2d', 'LayerNormLast']
from .fcmae import (FCMAE, IMAGENET_MEAN, IMAGENET_STD, VisibleLayout, export_fcmae_backbone,
                    fcmae_to_backbone_state_dict, infer_arch)

__all__ += ['FCMAE', 'IMAGENET_MEAN', 'IMAGENET_STD', 'VisibleLayout', 'export_fcmae_backbone',
            'fcmae_to_backbone_state_dict', 'infer_arch']
