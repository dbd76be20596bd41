"""Detect and convert every published ConvNeXt V2 checkpoint layout to :class:`ConvNeXtV2` keys.

One pure function, :func:`convert_state_dict`, takes a flat state dict in any supported layout
and returns this project's backbone state dict (``downsample_layers.i.k.*``,
``stages.i.j.{dwconv,norm,pwconv1,grn,pwconv2}.*``, optional ``stages.i.j.gamma``, output norms
``norm{i}.*``) together with the detected format and the keys it dropped. It is idempotent: a
state dict already in our layout comes back unchanged. Renaming is table driven (one anchored
regex per parameter, as in timm's ``checkpoint_filter_fn``); every reshape is checked, and when
the target model's shapes are given, the result is checked against them too.

Supported layouts (see ``docs/checkpoints.md``; the official ones are defined by
``models/convnextv2.py``, ``models/convnextv2_sparse.py``, ``models/fcmae.py`` and the
fine-tuning remap ``remap_checkpoint_keys`` in ``utils.py`` of the official repository):

- official ConvNeXt V2 (https://github.com/facebookresearch/ConvNeXt-V2) FCMAE pretrain-only and
  fine-tuned checkpoints, GRN stored as ``(1, 1, 1, C)``;
- checkpoints written by the official MinkowskiEngine FCMAE pretraining (``encoder.`` prefix,
  sparse ``.kernel`` weights, ``ln`` / ``linear`` inner modules, 2-D biases, ``(1, C)`` GRN);
- timm ``convnextv2_*`` (``.pth`` or ``.safetensors``; 1x1-conv MLPs in the small variants);
- mmpretrain ``ConvNeXt`` with ``use_grn=True`` (``backbone.`` prefix inside ``state_dict``);
- Hugging Face transformers ``ConvNextV2Model`` / ``ConvNextV2Backbone`` /
  ``ConvNextV2ForImageClassification``;
- this project's own backbone, detector / segmentor and FCMAE checkpoints.

The weights of the official models, and the timm, mmpretrain and Hugging Face copies of them,
are released under CC-BY-NC 4.0 (non-commercial use only).
"""
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Pattern, Sequence, Tuple, Union

import torch

from .shapes import check_shapes, shape_of

# Detected format -> what it is (shown in logs and in docs/checkpoints.md).
FORMATS: Dict[str, str] = {
    'cnxv2_dense': "this project's backbone state dict (also the FCMAE tool's exported backbone)",
    'cnxv2_dense-model': "an mmdet / mmseg model of this project (backbone under 'backbone.')",
    'cnxv2_dense-fcmae': "this project's FCMAE model (encoder under 'encoder.', plus decoder)",
    'official-fcmae': 'official ConvNeXt V2 FCMAE pretrain-only weights (dense, no head)',
    'official-finetuned': 'official ConvNeXt V2 fine-tuned weights (with final norm and head)',
    'official-sparse': 'official MinkowskiEngine FCMAE pretraining (encoder., sparse kernels)',
    'timm': 'timm ConvNeXt V2 (or V1) weights',
    'mmpretrain': 'mmpretrain ConvNeXt weights (use_grn=True for V2)',
    'transformers': 'Hugging Face transformers ConvNextV2 weights',
}

Replacement = Union[str, Callable[['re.Match[str]'], str]]

_P = r'(weight|bias)'  # the parameter name of a conv / linear / norm layer
_S = r'([0-3])'  # a stage index
_B = r'(\d+)'  # a block index

# Every key of our backbone, and nothing else.
_OUR_KEY = re.compile(
    r'^(?:downsample_layers\.[0-3]\.[01]\.(?:weight|bias)'
    r'|stages\.[0-3]\.\d+\.(?:(?:dwconv|norm|pwconv1|pwconv2)\.(?:weight|bias)|grn\.(?:gamma|beta)'
    r'|gamma)'
    r'|norm[0-3]\.(?:weight|bias))$')
# Keys of our backbone that hold 4-D conv weights and 2-D linear weights; all others are 1-D.
_CONV_WEIGHT = re.compile(r'^(?:downsample_layers\.0\.0|downsample_layers\.[1-3]\.1'
                          r'|stages\.[0-3]\.\d+\.dwconv)\.weight$')
_LINEAR_WEIGHT = re.compile(r'^stages\.[0-3]\.\d+\.pwconv[12]\.weight$')

# FCMAE decoder (official and this project's): 1x1 projection, mask token, decoder blocks, head.
DECODER_KEY = re.compile(r'^(?:proj|mask_token|decoder|pred)(?:\.|$)')
# Classification-only parts: official final norm + head, timm / mmpretrain head, HF pooled norm.
_CLASSIFIER = {
    'dense': re.compile(r'^(?:norm|head)\.'),
    'official-sparse': re.compile(r'^(?:norm|head)\.'),
    'timm': re.compile(r'^(?:head|norm_pre)\.'),
    'mmpretrain': re.compile(r'^head\.'),
    'transformers': re.compile(r'^(?:layernorm|classifier|pooler)\.'),
}


def _rules(pairs: Sequence[Tuple[str, Replacement]]) -> List[Tuple[Pattern, Replacement]]:
    return [(re.compile(pattern), repl) for pattern, repl in pairs]


# NOTE: `stem_0` / `stages_0` are the flattened names of a timm `features_only` model.
_TIMM_RULES = _rules([
    (rf'^stem[._]([01])\.{_P}$', r'downsample_layers.0.\1.\2'),
    (rf'^stages[._]{_S}\.downsample\.([01])\.{_P}$', r'downsample_layers.\1.\2.\3'),
    (rf'^stages[._]{_S}\.blocks\.{_B}\.conv_dw\.{_P}$', r'stages.\1.\2.dwconv.\3'),
    (rf'^stages[._]{_S}\.blocks\.{_B}\.norm\.{_P}$', r'stages.\1.\2.norm.\3'),
    (rf'^stages[._]{_S}\.blocks\.{_B}\.mlp\.fc([12])\.{_P}$', r'stages.\1.\2.pwconv\3.\4'),
    (rf'^stages[._]{_S}\.blocks\.{_B}\.mlp\.grn\.weight$', r'stages.\1.\2.grn.gamma'),
    (rf'^stages[._]{_S}\.blocks\.{_B}\.mlp\.grn\.bias$', r'stages.\1.\2.grn.beta'),
    (rf'^stages[._]{_S}\.blocks\.{_B}\.gamma$', r'stages.\1.\2.gamma'),  # V1 layer scale
])
_MMPRETRAIN_RULES = _rules([
    (rf'^downsample_layers\.{_S}\.([01])\.{_P}$', r'downsample_layers.\1.\2.\3'),
    (rf'^stages\.{_S}\.{_B}\.depthwise_conv\.{_P}$', r'stages.\1.\2.dwconv.\3'),
    (rf'^stages\.{_S}\.{_B}\.norm\.{_P}$', r'stages.\1.\2.norm.\3'),
    (rf'^stages\.{_S}\.{_B}\.pointwise_conv([12])\.{_P}$', r'stages.\1.\2.pwconv\3.\4'),
    (rf'^stages\.{_S}\.{_B}\.grn\.(gamma|beta)$', r'stages.\1.\2.grn.\3'),
    (rf'^stages\.{_S}\.{_B}\.gamma$', r'stages.\1.\2.gamma'),
    (rf'^norm{_S}\.{_P}$', r'norm\1.\2'),
])
_TRANSFORMERS_RULES = _rules([
    (rf'^embeddings\.patch_embeddings\.{_P}$', r'downsample_layers.0.0.\1'),
    (rf'^embeddings\.layernorm\.{_P}$', r'downsample_layers.0.1.\1'),
    (rf'^encoder\.stages\.([1-3])\.downsampling_layer\.([01])\.{_P}$',
     r'downsample_layers.\1.\2.\3'),
    (rf'^encoder\.stages\.{_S}\.layers\.{_B}\.dwconv\.{_P}$', r'stages.\1.\2.dwconv.\3'),
    (rf'^encoder\.stages\.{_S}\.layers\.{_B}\.layernorm\.{_P}$', r'stages.\1.\2.norm.\3'),
    (rf'^encoder\.stages\.{_S}\.layers\.{_B}\.pwconv([12])\.{_P}$', r'stages.\1.\2.pwconv\3.\4'),
    (rf'^encoder\.stages\.{_S}\.layers\.{_B}\.grn\.weight$', r'stages.\1.\2.grn.gamma'),
    (rf'^encoder\.stages\.{_S}\.layers\.{_B}\.grn\.bias$', r'stages.\1.\2.grn.beta'),
    # ConvNextV2Backbone's per-stage output norms are our output norms (stage1 is our stage 0).
    (rf'^hidden_states_norms\.stage([1-4])\.{_P}$',
     lambda m: f'norm{int(m.group(1)) - 1}.{m.group(2)}'),
])
# Official sparse names differ from ours by the inner module of MinkowskiLayerNorm (`ln`) and
# MinkowskiLinear (`linear`), and by `.kernel` instead of `.weight` on sparse convolutions.
_SPARSE_RULES = _rules([
    (r'^(.*)\.(?:ln|linear)\.(weight|bias)$', r'\1.\2'),
    (r'^(.*)\.kernel$', r'\1.weight'),
])

# How to recognise each naming family (after any wrapper prefix is removed).
_FAMILY_SIGNS: List[Tuple[str, Pattern]] = [
    ('transformers',
     re.compile(r'^(?:embeddings\.patch_embeddings\.|encoder\.stages\.\d\.layers\.)')),
    ('timm', re.compile(r'^(?:stem[._][01]\.|stages[._]\d\.blocks\.)')),
    ('mmpretrain', re.compile(r'^stages\.\d\.\d+\.(?:depthwise_conv|pointwise_conv[12])\.')),
    ('official-sparse', re.compile(r'(?:\.kernel|\.(?:ln|linear)\.(?:weight|bias))$')),
    ('dense', re.compile(r'^(?:downsample_layers\.\d\.[01]\.|stages\.\d\.\d+\.dwconv\.)')),
]
# NOTE: transformers' bare ConvNextV2Model has top-level `encoder.stages.*` keys; those are its
# own module names, not the `encoder.` wrapper of an FCMAE model.
_HF_ENCODER = re.compile(r'^encoder\.stages\.\d\.(?:layers|downsampling_layer)\.')


class CheckpointFormatError(ValueError):
    """A state dict in no supported layout, or a tensor that cannot be brought to ours."""


@dataclass
class ConversionResult:
    """What :func:`convert_state_dict` produced.

    Attributes:
        state_dict (dict[str, Tensor]): Backbone weights under :class:`ConvNeXtV2` names.
        source_format (str): The detected layout, a key of :data:`FORMATS`.
        dropped_keys (list[str]): Source keys left out on purpose: FCMAE decoder and mask token,
            classification head and final norm, and everything outside the backbone of a
            detector / segmentor / classifier (neck, heads, data preprocessor).
        unknown_keys (list[str]): Source keys inside the backbone that map to no backbone
            parameter; left out, and reported as unexpected by the loader.
        prefix (str): The wrapper prefix whose keys were kept (``'backbone.'``, ``'encoder.'``,
            ``'convnextv2.'``) or ``''``.
    """

    state_dict: Dict[str, torch.Tensor]
    source_format: str
    dropped_keys: List[str] = field(default_factory=list)
    unknown_keys: List[str] = field(default_factory=list)
    prefix: str = ''


def is_backbone_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True when every key and shape is already this project's backbone layout.

    Args:
        state_dict (Mapping[str, Tensor]): Any flat state dict.
    """
    if not state_dict:
        return False
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not _OUR_KEY.match(key):
            return False
        if value.dim() != _expected_rank(key):
            return False
    return True


def _expected_rank(key: str) -> int:
    if _CONV_WEIGHT.match(key):
        return 4
    if _LINEAR_WEIGHT.match(key):
        return 2
    return 1


def _square_side(volume: int, key: str) -> int:
    side = int(round(volume ** 0.5))
    if side * side != volume:
        raise CheckpointFormatError(f'{key}: a sparse kernel volume of {volume} is not k*k')
    return side


def sparse_kernel_to_dense(kernel: torch.Tensor, key: str = 'kernel') -> torch.Tensor:
    """Convert a MinkowskiEngine 2-D convolution kernel to a dense ``nn.Conv2d`` weight.

    Depthwise ``(k*k, C)`` -> ``(C, k*k)`` -> ``(C, 1, k, k)``; regular ``(k*k, in, out)`` ->
    ``(out, in, k*k)`` -> ``(out, in, k, k)``; then the two spatial axes are swapped because
    MinkowskiEngine enumerates kernel offsets with the first spatial axis fastest.

    Args:
        kernel (Tensor): The sparse kernel, 2-D (depthwise) or 3-D (regular).
        key (str): Its name, for error messages. Defaults to ``'kernel'``.

    Returns:
        Tensor: A contiguous 4-D weight.
    """
    if kernel.dim() == 2:  # depthwise: (k*k, C)
        volume, channels = kernel.shape
        side = _square_side(volume, key)
        dense = kernel.permute(1, 0).reshape(channels, 1, side, side)  # (C, 1, k, k)
    elif kernel.dim() == 3:  # regular: (k*k, in, out)
        volume, in_channels, out_channels = kernel.shape
        side = _square_side(volume, key)
        dense = kernel.permute(2, 1, 0).reshape(out_channels, in_channels, side, side)
    else:
        raise CheckpointFormatError(f'{key}: a sparse kernel must be 2-D or 3-D, got shape '
                                    f'{shape_of(kernel)}')
    return dense.transpose(2, 3).contiguous()  # swap the two spatial axes


def _to_rank(key: str, source_key: str, value: torch.Tensor) -> torch.Tensor:
    """Bring ``value`` to the rank our parameter ``key`` has, refusing anything lossy."""
    rank = _expected_rank(key)
    if value.dim() == rank:
        return value
    shape = shape_of(value)
    if rank == 1 and value.numel() == max(shape, default=1):
        return value.reshape(-1)  # (1, 1, 1, C) GRN, (1, C) sparse bias / GRN
    if rank == 2 and value.dim() == 4 and shape[2:] == (1, 1):
        return value.flatten(1)  # 1x1 conv (out, in, 1, 1) -> Linear (out, in)
    raise CheckpointFormatError(
        f'{source_key}: cannot turn shape {shape} into the {rank}-D tensor {key} needs')


def _detect_family(keys: Sequence[str]) -> Optional[str]:
    for family, sign in _FAMILY_SIGNS:
        if any(sign.search(key) for key in keys):
            return family
    return None


def strip_ddp_prefix(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
    """The state dict with a leading ``module.`` removed from every key that has one.

    NOTE: a model saved while wrapped in DistributedDataParallel has its keys under ``module.``.
    """
    return {(k[len('module.'):] if k.startswith('module.') else k): v
            for k, v in state_dict.items()}


def split_prefix(keys: Sequence[str]) -> str:
    """The wrapper prefix holding the backbone: ``convnextv2.``, ``backbone.``, ``encoder.``."""
    for prefix in ('convnextv2.', 'backbone.'):
        if any(key.startswith(prefix) for key in keys):
            return prefix
    if any(key.startswith('encoder.') for key in keys) and \
            not any(_HF_ENCODER.match(key) for key in keys):
        return 'encoder.'
    return ''


def _format_name(family: str, prefix: str, inner: Mapping[str, torch.Tensor],
                 outer_keys: Sequence[str]) -> str:
    if family != 'dense':
        return family
    grn_4d = any(k.endswith(('grn.gamma', 'grn.beta')) and v.dim() > 1 for k, v in inner.items())
    if prefix == 'backbone.':
        return 'cnxv2_dense-model'
    if prefix == 'encoder.':
        return 'official-fcmae' if grn_4d else 'cnxv2_dense-fcmae'
    if any(_CLASSIFIER['dense'].match(k) for k in inner):
        return 'official-finetuned'
    if grn_4d or any(DECODER_KEY.match(k) for k in list(inner) + list(outer_keys)):
        return 'official-fcmae'
    return 'cnxv2_dense'


def _rename(key: str, rules: List[Tuple[Pattern, Replacement]]) -> Optional[str]:
    for pattern, repl in rules:
        if pattern.match(key):
            return pattern.sub(repl, key, count=1)
    return None


def _convert_key(family: str, key: str, value: torch.Tensor
                 ) -> Tuple[Optional[str], torch.Tensor]:
    """Our name and tensor for one source key of ``family`` (name None: not a backbone key)."""
    if family == 'timm':
        return _rename(key, _TIMM_RULES), value
    if family == 'mmpretrain':
        return _rename(key, _MMPRETRAIN_RULES), value
    if family == 'transformers':
        return _rename(key, _TRANSFORMERS_RULES), value
    if family == 'official-sparse':
        new_key = _rename(key, _SPARSE_RULES) or key
        if key.endswith('.kernel'):
            value = sparse_kernel_to_dense(value, key)
        return (new_key if _OUR_KEY.match(new_key) else None), value
    return (key if _OUR_KEY.match(key) else None), value  # dense: official names are ours


def _check_flat(state_dict: Any) -> None:
    if not isinstance(state_dict, Mapping):
        raise CheckpointFormatError(f'A state dict must be a mapping, got '
                                    f'{type(state_dict).__name__}')
    nested = [k for k, v in state_dict.items() if isinstance(v, Mapping)]
    if nested:
        raise CheckpointFormatError(
            f'Expected a flat dict of tensors but {nested[:3]} hold dicts; pass the weights '
            '(cnxv2_dense.checkpoints.extract_state_dict(obj)), not the whole checkpoint.')


@dataclass
class _Layout:
    """A source state dict split into its backbone part and the rest, with its family."""

    prefix: str
    inner: Dict[str, torch.Tensor]  # the backbone part, prefix removed
    outer: List[str]  # keys outside the prefix, or not tensors: dropped
    family: str
    source_format: str

    @classmethod
    def of(cls, state_dict: Mapping[str, Any]) -> '_Layout':
        non_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
        state = {k: v for k, v in strip_ddp_prefix(state_dict).items()
                 if isinstance(v, torch.Tensor)}
        prefix = split_prefix(list(state))
        inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        outer = [k for k in state if not k.startswith(prefix)]
        family = _detect_family(list(inner))
        if family is None:
            raise CheckpointFormatError(
                'Not a ConvNeXt V2 checkpoint in any supported layout '
                f'({", ".join(sorted(FORMATS))}); its first keys are {sorted(state)[:6]}. '
                'See docs/checkpoints.md.')
        return cls(prefix, inner, non_tensors + outer, family,
                   _format_name(family, prefix, inner, outer))


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """Name (a key of :data:`FORMATS`) of the layout of a flat state dict.

    Args:
        state_dict (Mapping[str, Tensor]): Weights as stored in a checkpoint (after
            :func:`~cnxv2_dense.checkpoints.extract_state_dict`).

    Raises:
        CheckpointFormatError: No supported layout matches.
    """
    _check_flat(state_dict)
    if is_backbone_state_dict(state_dict):
        return 'cnxv2_dense'
    return _Layout.of(state_dict).source_format


def convert_state_dict(state_dict: Mapping[str, Any],
                       target_shapes: Optional[Mapping[str, Any]] = None) -> ConversionResult:
    """Convert a state dict in any supported layout to :class:`ConvNeXtV2` backbone keys.

    Pure (the input is not modified; tensors are shared where no reshape is needed) and
    idempotent (a state dict already in our layout is returned as is).

    Args:
        state_dict (Mapping[str, Tensor]): Flat weights, e.g. ``extract_state_dict(obj)``.
        target_shapes (Mapping[str, torch.Size], optional): Shapes of the target backbone's
            state dict; when given, the result is checked against them
            (:func:`check_shapes`). Defaults to None.

    Returns:
        ConversionResult: The backbone weights, the detected format and what was left out.

    Raises:
        CheckpointFormatError: The layout is not recognised, or a tensor cannot be reshaped.
        CheckpointShapeError: The weights do not fit ``target_shapes``.
    """
    _check_flat(state_dict)
    if is_backbone_state_dict(state_dict):  # already ours: nothing to do
        result = ConversionResult(dict(state_dict), 'cnxv2_dense')
    else:
        result = _convert(state_dict)
    if target_shapes is not None:
        check_shapes(result.state_dict, target_shapes)
    return result


def _convert(state_dict: Mapping[str, Any]) -> ConversionResult:
    layout = _Layout.of(state_dict)
    prefix, family = layout.prefix, layout.family
    dropped = list(layout.outer)
    unknown: List[str] = []
    converted: Dict[str, torch.Tensor] = {}
    classifier = _CLASSIFIER.get(family)
    for key, value in layout.inner.items():
        if DECODER_KEY.match(key) or (classifier is not None and classifier.match(key)):
            dropped.append(prefix + key)
            continue
        new_key, value = _convert_key(family, key, value)
        if new_key is None or not _OUR_KEY.match(new_key):
            unknown.append(prefix + key)
            continue
        if new_key in converted:
            raise CheckpointFormatError(f'Two source keys map to {new_key}; the last is '
                                        f'{prefix + key}. Is this a mix of two checkpoints?')
        converted[new_key] = _to_rank(new_key, prefix + key, value)
    return ConversionResult(converted, layout.source_format, sorted(dropped), sorted(unknown),
                            prefix)


def summarise_keys(keys: Sequence[str], limit: int = 8) -> str:
    """Short text for a list of keys: all of them up to ``limit``, else counts per top module.

    Args:
        keys (Sequence[str]): Parameter names.
        limit (int): Most names listed one by one. Defaults to 8.
    """
    if not keys:
        return 'none'
    if len(keys) <= limit:
        return ', '.join(keys)
    groups: Dict[str, int] = {}
    for key in keys:
        top = key.split('.')[0]
        if top in ('backbone', 'encoder', 'convnextv2', 'module') and '.' in key:
            top = '.'.join(key.split('.')[:2])
        groups[top] = groups.get(top, 0) + 1
    return f'{len(keys)} keys: ' + ', '.join(f'{g}.* ({n})' for g, n in groups.items())
