"""cnxv2_dense: ConvNeXt V2 for dense prediction in the OpenMMLab stack."""
from .models import GRN, ConvNeXtV2, LayerNorm2d
from .optim import LayerDecayOptimWrapperConstructor
from .registry import MODELS
from .version import __version__

__all__ = ['__version__', 'ConvNeXtV2', 'GRN', 'LayerNorm2d', 'MODELS']
__all__ += ['LayerDecayOptimWrapperConstructor']
from .checkpoint import (PretrainedLoadReport, UnreadableCheckpointError,  # noqa: E402
                         UnsafeCheckpointError, checkpoint_safe_globals, extract_state_dict,
                         load_pretrained_backbone, read_checkpoint, resolve_checkpoint)
from .checkpoint_formats import (FORMATS, CheckpointFormatError,  # noqa: E402
                                 CheckpointShapeError, ConversionResult, arch_of,
                                 convert_state_dict, detect_format, guess_arch,
                                 sparse_kernel_to_dense)

__all__ += ['FORMATS', 'CheckpointFormatError', 'CheckpointShapeError', 'ConversionResult',
            'PretrainedLoadReport', 'UnreadableCheckpointError', 'UnsafeCheckpointError',
            'arch_of', 'checkpoint_safe_globals', 'convert_state_dict', 'detect_format',
            'extract_state_dict', 'guess_arch', 'load_pretrained_backbone', 'read_checkpoint',
            'resolve_checkpoint', 'sparse_kernel_to_dense']
