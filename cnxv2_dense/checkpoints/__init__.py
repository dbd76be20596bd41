"""Checkpoint files: safe reading, layout detection and conversion, loading, FCMAE export.

Depends on :mod:`cnxv2_dense.arch` (the arch table) and never on :mod:`cnxv2_dense.models`; the
backbone reaches :func:`load_pretrained_backbone` through the registered weight initializer
:class:`PretrainedBackbone`. So the dependencies run one way: models <- checkpoints <- tools.

- :mod:`.reading`: read a file or URL safely, find the weights inside.
- :mod:`.formats`: detect and convert every published layout to the backbone's keys.
- :mod:`.shapes`: the arch of a state dict and the check against a model's shapes.
- :mod:`.loading`: load into a backbone with a report; the ``Pretrained`` initializer.
- :mod:`.fcmae_export`: the encoder of an FCMAE checkpoint as a backbone checkpoint.
"""
from .fcmae_export import export_fcmae_backbone, fcmae_to_backbone_state_dict
from .formats import (FORMATS, CheckpointFormatError, ConversionResult, convert_state_dict,
                      detect_format, is_backbone_state_dict, sparse_kernel_to_dense,
                      summarise_keys)
from .loading import PretrainedBackbone, PretrainedLoadReport, load_pretrained_backbone
from .reading import (UnreadableCheckpointError, UnsafeCheckpointError, checkpoint_safe_globals,
                      extract_state_dict, read_checkpoint, resolve_checkpoint)
from .shapes import CheckpointShapeError, arch_of, check_shapes, describe_arch, guess_arch

__all__ = [
    'FORMATS', 'CheckpointFormatError', 'CheckpointShapeError', 'ConversionResult',
    'PretrainedBackbone', 'PretrainedLoadReport', 'UnreadableCheckpointError',
    'UnsafeCheckpointError', 'arch_of', 'check_shapes', 'checkpoint_safe_globals',
    'convert_state_dict', 'describe_arch', 'detect_format', 'export_fcmae_backbone',
    'extract_state_dict', 'fcmae_to_backbone_state_dict', 'guess_arch', 'is_backbone_state_dict',
    'load_pretrained_backbone', 'read_checkpoint', 'resolve_checkpoint', 'sparse_kernel_to_dense',
    'summarise_keys',
]
