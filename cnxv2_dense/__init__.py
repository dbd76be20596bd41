"""cnxv2_dense: ConvNeXt V2 for dense prediction in the OpenMMLab stack."""
from .models import GRN, ConvNeXtV2, LayerNorm2d
from .registry import MODELS
from .version import __version__

__all__ = ['__version__', 'ConvNeXtV2', 'GRN', 'LayerNorm2d', 'MODELS']
