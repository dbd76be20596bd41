"""cnxv2_dense: ConvNeXt V2 for dense prediction in the OpenMMLab stack."""
from .version import __version__

__all__ = ['__version__']
