"""cnxv2_dense: ConvNeXt V2 for dense prediction in the OpenMMLab stack.

Importing the package registers, in the ``cnxv2_dense`` registry scope, the backbone
``ConvNeXtV2``, the ``FCMAE`` pretraining model, the ``LayerDecayOptimWrapperConstructor`` and
the datasets / transforms of the FCMAE tool, for mmdet, mmseg and plain mmengine configs alike
(``custom_imports=dict(imports=['cnxv2_dense'])``).

torch, mmengine and mmcv are checked against the supported ranges first
(:mod:`cnxv2_dense.dependencies`); mmdet and mmsegmentation are optional and never imported here.
"""
from .dependencies import DependencyError, check_installed_versions, require_toolbox

check_installed_versions()  # before anything that imports them

from .arch import ARCH_SETTINGS, parse_arch  # noqa: E402
from .checkpoints import (FORMATS, CheckpointFormatError, CheckpointShapeError,  # noqa: E402
                          ConversionResult, PretrainedLoadReport, UnreadableCheckpointError,
                          UnsafeCheckpointError,
                          arch_of, checkpoint_safe_globals, convert_state_dict, detect_format,
                          export_fcmae_backbone, extract_state_dict, fcmae_to_backbone_state_dict,
                          guess_arch, load_pretrained_backbone, read_checkpoint,
                          resolve_checkpoint, sparse_kernel_to_dense)
from .models import FCMAE, GRN, ConvNeXtV2, LayerNorm2d  # noqa: E402
from .optim import LayerDecayOptimWrapperConstructor  # noqa: E402
from .registry import MODELS  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    '__version__', 'DependencyError', 'check_installed_versions', 'require_toolbox',
    'ARCH_SETTINGS', 'MODELS', 'ConvNeXtV2', 'FCMAE', 'GRN', 'LayerNorm2d',
    'parse_arch', 'export_fcmae_backbone', 'fcmae_to_backbone_state_dict',
    'LayerDecayOptimWrapperConstructor',
    'FORMATS', 'CheckpointFormatError', 'CheckpointShapeError', 'ConversionResult',
    'PretrainedLoadReport', 'UnreadableCheckpointError', 'UnsafeCheckpointError', 'arch_of',
    'checkpoint_safe_globals', 'convert_state_dict', 'detect_format', 'extract_state_dict',
    'guess_arch', 'load_pretrained_backbone', 'read_checkpoint', 'resolve_checkpoint',
    'sparse_kernel_to_dense',
]
