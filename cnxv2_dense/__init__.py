"""cnxv2_dense: ConvNeXt V2 for dense prediction in the OpenMMLab stack.

Importing the package registers, in the ``cnxv2_dense`` registry scope, the backbone
``ConvNeXtV2``, the ``FCMAE`` pretraining model, the ``LayerDecayOptimWrapperConstructor`` and
the datasets / transforms of the FCMAE tool, for mmdet, mmseg and plain mmengine configs alike
(``custom_imports=dict(imports=['cnxv2_dense'])``).
"""
from .checkpoint import (PretrainedLoadReport, UnreadableCheckpointError, UnsafeCheckpointError,
                         checkpoint_safe_globals, extract_state_dict, load_pretrained_backbone,
                         read_checkpoint, resolve_checkpoint)
from .checkpoint_formats import (FORMATS, CheckpointFormatError, CheckpointShapeError,
                                 ConversionResult, arch_of, convert_state_dict, detect_format,
                                 guess_arch, sparse_kernel_to_dense)
from .models import FCMAE, GRN, ConvNeXtV2, LayerNorm2d
from .optim import LayerDecayOptimWrapperConstructor
from .registry import MODELS
from .version import __version__

__all__ = [
    '__version__', 'MODELS', 'ConvNeXtV2', 'FCMAE', 'GRN', 'LayerNorm2d',
    'LayerDecayOptimWrapperConstructor',
    'FORMATS', 'CheckpointFormatError', 'CheckpointShapeError', 'ConversionResult',
    'PretrainedLoadReport', 'UnreadableCheckpointError', 'UnsafeCheckpointError', 'arch_of',
    'checkpoint_safe_globals', 'convert_state_dict', 'detect_format', 'extract_state_dict',
    'guess_arch', 'load_pretrained_backbone', 'read_checkpoint', 'resolve_checkpoint',
    'sparse_kernel_to_dense',
]
