"""cnxv2_dense: ConvNeXt V2 for dense prediction in the OpenMMLab stack.

Importing the package registers, in the ``cnxv2_dense`` registry scope, the backbone
``ConvNeXtV2``, the ``FCMAE`` pretraining model, the ``LayerDecayOptimWrapperConstructor`` and
the datasets / transforms of the FCMAE tool, for mmdet, mmseg and plain mmengine configs alike
(``custom_imports=dict(imports=['cnxv2_dense'])``).
"""
from .arch import ARCH_SETTINGS, parse_arch
from .checkpoints import (FORMATS, CheckpointFormatError, CheckpointShapeError, ConversionResult,
                          PretrainedLoadReport, UnreadableCheckpointError, UnsafeCheckpointError,
                          arch_of, checkpoint_safe_globals, convert_state_dict, detect_format,
                          export_fcmae_backbone, extract_state_dict, fcmae_to_backbone_state_dict,
                          guess_arch, load_pretrained_backbone, read_checkpoint,
                          resolve_checkpoint, sparse_kernel_to_dense)
from .models import FCMAE, GRN, ConvNeXtV2, LayerNorm2d
from .optim import LayerDecayOptimWrapperConstructor
from .registry import MODELS
from .version import __version__

__all__ = [
    '__version__', 'ARCH_SETTINGS', 'MODELS', 'ConvNeXtV2', 'FCMAE', 'GRN', 'LayerNorm2d',
    'parse_arch', 'export_fcmae_backbone', 'fcmae_to_backbone_state_dict',
    'LayerDecayOptimWrapperConstructor',
    'FORMATS', 'CheckpointFormatError', 'CheckpointShapeError', 'ConversionResult',
    'PretrainedLoadReport', 'UnreadableCheckpointError', 'UnsafeCheckpointError', 'arch_of',
    'checkpoint_safe_globals', 'convert_state_dict', 'detect_format', 'extract_state_dict',
    'guess_arch', 'load_pretrained_backbone', 'read_checkpoint', 'resolve_checkpoint',
    'sparse_kernel_to_dense',
]
