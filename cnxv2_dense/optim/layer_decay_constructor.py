"""Layer-wise learning-rate decay for ConvNeXt V2 backbones in mmdet and mmseg.

The dense-task recipes of the ConvNeXt code base (COCO Mask / Cascade Mask R-CNN, ADE20K UperNet)
fine-tune with lower learning rates for layers closer to the input. The backbone says which
"layer" a parameter is in (``get_layer_depth``, see :mod:`cnxv2_dense.models.layer_depth`);
this constructor turns those ids into optimizer parameter groups:

- lr = base lr * ``decay_rate ** (num_layers + 1 - layer_id)``, so everything outside the backbone
  (id ``num_layers + 1``: neck, heads, output norms) keeps the base lr;
- no weight decay for biases, 1-D parameters and the parameters of norm layers and GRN, whatever
  their stored shape (GRN ``gamma`` / ``beta`` are ``(1, 1, 1, C)`` in the official code, which is
  why a plain "1-D only" rule decays them);
- mmengine's ``paramwise_cfg`` keys (``bias_lr_mult``, ``bias_decay_mult``, ``norm_decay_mult``,
  ``dwconv_decay_mult``, ``flat_decay_mult``, ``custom_keys``) keep the meaning they have in
  ``DefaultOptimWrapperConstructor``, and the lr decay scale multiplies the lr they give;
- with ``custom_keys_mode='multiply'`` a ``custom_keys`` entry multiplies what those rules give
  instead of replacing them: the Mask2Former and DINO bases of mmdet / mmseg set
  ``'backbone': dict(lr_mult=0.1, decay_mult=1.0)`` next to ``norm_decay_mult=0``, and this keeps
  both (backbone at a tenth of the lr, still no weight decay on its norms, GRN and biases);
- a ``custom_keys`` entry that applies to no parameter of the model (a key written for another
  backbone, e.g. Swin's ``relative_position_bias_table``) is an error naming it, not a silent
  no-op.

Usage (mmdet or mmseg config; see docs/layer_decay.md)::

    custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)
    optim_wrapper = dict(
        type='OptimWrapper',
        constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
        paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise', num_layers=6))
"""
import inspect
import logging
import re
from numbers import Real
from typing import Any, Dict, List, Optional, Tuple

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..models.layer_depth import DECAY_TYPES
from ..models.layers import GRN
from ..registry import OPTIM_WRAPPER_CONSTRUCTORS

# paramwise_cfg keys, in the order the error messages list them.
LAYER_DECAY_KEYS = ('decay_rate', 'decay_type', 'num_layers', 'custom_keys_mode')
# How a custom_keys entry combines with the bias / norm / dwconv / flat rules: 'replace' them
# (mmengine's meaning, the default) or 'multiply' what they give.
CUSTOM_KEYS_MODES = ('replace', 'multiply')
# Weight-decay multipliers of DefaultOptimWrapperConstructor, by the kind of parameter they govern
# (see weight_decay_kind), with this constructor's defaults: the recipe gives biases, norm / GRN
# parameters and other 1-D parameters no weight decay unless asked for (mmengine's default is 1).
DECAY_MULT_DEFAULTS = {'norm_decay_mult': 0., 'bias_decay_mult': 0., 'dwconv_decay_mult': 1.,
                       'flat_decay_mult': 0.}
MMENGINE_KEYS = ('custom_keys', 'bias_lr_mult') + tuple(DECAY_MULT_DEFAULTS)
VALID_KEYS = LAYER_DECAY_KEYS + MMENGINE_KEYS
CUSTOM_KEY_FIELDS = ('lr_mult', 'decay_mult')
# DefaultOptimWrapperConstructor options that are rejected, with the reason.
UNSUPPORTED_KEYS = {
    'dcn_offset_lr_mult': 'use custom_keys (e.g. {"conv_offset": dict(lr_mult=...)})',
    'bypass_duplicate': 'a parameter shared by several modules is always added once',
}

# Modules whose parameters are normalisation affine parameters (mmcv's norm layers subclass these).
NORM_LAYERS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm, GRN)
# GRN parameters of modules that are not our GRN class: official (``grn.gamma``/``grn.beta``),
# timm and Hugging Face (``grn.weight``/``grn.bias``), mmpretrain (``grn.gamma``/``grn.beta``).
_GRN_PARAM = re.compile(r'(^|\.)grn\.(gamma|beta|weight|bias)$')

_BACKBONE_PREFIX = 'backbone.'


def lr_decay_scale(layer_id: int, num_layers: int, decay_rate: float) -> float:
    """Learning-rate multiplier of a layer: ``decay_rate ** (num_layers + 1 - layer_id)``.

    Args:
        layer_id (int): Id from the backbone's ``get_layer_depth``, in ``[0, num_layers + 1]``.
        num_layers (int): Id of the last backbone layer.
        decay_rate (float): Decay per layer, in ``(0, 1]``.

    Returns:
        float: 1 for ``layer_id == num_layers + 1`` (outside the backbone), smaller below.
    """
    return decay_rate ** (num_layers + 1 - layer_id)


def weight_decay_kind(param_name: str, param: nn.Parameter, module: nn.Module) -> str:
    """Which weight-decay rule a parameter falls under, in mmengine's order of precedence.

    Args:
        param_name (str): Full parameter name, e.g. ``backbone.stages.0.0.grn.gamma``.
        param (nn.Parameter): The parameter.
        module (nn.Module): The module that owns it directly.

    Returns:
        str: ``'norm'`` (a norm layer's or GRN's parameter, any shape), ``'bias'`` (any other
        parameter called ``bias``, any shape), ``'dwconv'`` (the weight of a depthwise
        ``Conv2d``: ``in_channels == groups``), ``'flat'`` (any other 1-D parameter) or
        ``'decay'`` (everything else: conv and linear weights). The same as
        ``DefaultOptimWrapperConstructor`` decides, except that GRN counts as a norm layer
        (mmengine sees its parameters as plain 1-D ones, or, in the official ``(1, 1, 1, C)``
        shape, as weights to decay).
    """
    if isinstance(module, NORM_LAYERS) or _GRN_PARAM.search(param_name):
        return 'norm'
    if param_name.rsplit('.', 1)[-1] == 'bias':
        return 'bias'
    if isinstance(module, nn.Conv2d) and module.in_channels == module.groups:
        return 'dwconv'
    if param.ndim == 1:
        return 'flat'
    return 'decay'


def _check_number(key: str, value: Any, low: float, high: Optional[float] = None,
                  low_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a real number in the given range, else raise.

    Args:
        key (str): Config path of the value, for the message (e.g. ``paramwise_cfg.decay_rate``).
        value (Any): The value to check.
        low (float): Lower bound.
        high (float, optional): Inclusive upper bound; None for none. Defaults to None.
        low_inclusive (bool): Whether ``low`` itself is allowed. Defaults to True.

    Returns:
        float: ``value`` as a float.
    """
    low_ok = isinstance(value, Real) and not isinstance(value, bool) and (
        value >= low if low_inclusive else value > low)
    if not low_ok or (high is not None and value > high):
        bracket = '[' if low_inclusive else '('
        upper = f'{high}]' if high is not None else 'inf)'
        raise ValueError(f'{key} must be a number in {bracket}{low}, {upper}, '
                         f'got {value!r}')
    return float(value)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor with layer-wise lr decay for a model's backbone.

    The model (after unwrapping DDP) must have a ``backbone`` attribute whose
    ``get_layer_depth(param_name, prefix, decay_type, num_layers)`` returns
    ``(layer_id, num_layers + 1)``, as :class:`cnxv2_dense.ConvNeXtV2` does. Parameters outside the
    backbone get id ``num_layers + 1`` (lr scale 1). Parameters with ``requires_grad=False`` are
    left out. One group is made per distinct ``(layer_id, lr, weight_decay)``; each group also
    carries ``param_names``, ``layer_id`` and ``lr_scale`` (its lr over the base lr).

    Args:
        optim_wrapper_cfg (dict): The optimizer-wrapper config; ``optimizer`` must set ``lr``
            and ``weight_decay`` (0 for none).
        paramwise_cfg (dict): Options, all keys of :data:`VALID_KEYS`:

            - ``decay_rate`` (float, required): lr decay per layer, in ``(0, 1]``.
            - ``decay_type`` (str): ``'layer_wise'`` or ``'stage_wise'``. Defaults to
              ``'layer_wise'``.
            - ``num_layers`` (int, optional): Id of the last backbone layer. Defaults to the
              backbone's own value (``ConvNeXtV2.num_layers``: 6 for a depth-9 third stage,
              12 for depth 27).
            - ``custom_keys`` (dict): ``{substring: dict(lr_mult=..., decay_mult=...)}``
              (each field defaults to 1); the longest key contained in a parameter's full name
              (ties: alphabetical) governs it. A key that governs no parameter of the model
              (including frozen ones) is an error.
            - ``custom_keys_mode`` (str): ``'replace'``: the key sets the lr to ``lr_mult``
              times the base lr and the weight decay to ``decay_mult`` times the base weight
              decay, and the rules below are skipped (mmengine's meaning). ``'multiply'``: the
              rules below apply and the key's ``lr_mult`` / ``decay_mult`` multiply the lr /
              weight decay they give. Defaults to ``'replace'``.
            - ``bias_lr_mult`` (float): lr multiplier of parameters named ``bias`` outside norm
              layers. Defaults to 1.
            - ``norm_decay_mult``, ``bias_decay_mult``, ``dwconv_decay_mult``,
              ``flat_decay_mult`` (float): Weight decay, as a multiple of the base weight decay,
              of norm-layer and GRN parameters, of other biases, of depthwise-conv weights, and
              of other 1-D parameters; the first that applies wins, in that order. Default 0,
              0, 1 and 0 (mmengine's default is 1 for all: here the recipe's no-decay rule).

            Whatever the rules give, the lr is then multiplied by the layer's decay scale.
    """

    def _validate_cfg(self) -> None:
        """Check ``paramwise_cfg`` and the optimizer's lr / weight decay; store parsed options."""
        name = type(self).__name__
        cfg = self.paramwise_cfg
        if not isinstance(cfg, dict):
            raise TypeError(f'{name}: paramwise_cfg must be a dict, got {type(cfg).__name__}')
        unsupported = sorted(set(cfg) & set(UNSUPPORTED_KEYS))
        if unsupported:
            reasons = '; '.join(f'{key}: {UNSUPPORTED_KEYS[key]}' for key in unsupported)
            raise ValueError(f'{name} does not support paramwise_cfg {unsupported} ({reasons}); '
                             f'valid keys: {list(VALID_KEYS)}')
        unknown = sorted(set(cfg) - set(VALID_KEYS))
        if unknown:
            raise ValueError(f'Unknown paramwise_cfg key(s) {unknown} for {name}; '
                             f'valid keys: {list(VALID_KEYS)}')
        if 'decay_rate' not in cfg:
            raise ValueError(f'{name} needs paramwise_cfg.decay_rate (lr decay per layer, in '
                             '(0, 1], e.g. 0.95)')
        self.decay_rate = _check_number('paramwise_cfg.decay_rate', cfg['decay_rate'], 0., 1.,
                                        low_inclusive=False)
        self.decay_type = cfg.get('decay_type', 'layer_wise')
        if self.decay_type not in DECAY_TYPES:
            raise ValueError(f'paramwise_cfg.decay_type must be one of {DECAY_TYPES}, '
                             f'got {self.decay_type!r}')
        self.num_layers: Optional[int] = cfg.get('num_layers')
        if self.num_layers is not None and (
                isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int)
                or self.num_layers < 1):
            raise ValueError('paramwise_cfg.num_layers must be a positive int or omitted (then '
                             f"the backbone's default is used), got {self.num_layers!r}")
        self.decay_mults: Dict[str, float] = {'decay': 1.}
        for key, default in DECAY_MULT_DEFAULTS.items():
            kind = key[:-len('_decay_mult')]
            self.decay_mults[kind] = _check_number(f'paramwise_cfg.{key}', cfg.get(key, default),
                                                   0.)
        self.bias_lr_mult = _check_number('paramwise_cfg.bias_lr_mult', cfg.get('bias_lr_mult', 1.),
                                          0.)
        self.custom_keys = self._parse_custom_keys(cfg.get('custom_keys', {}))
        self.custom_keys_mode = cfg.get('custom_keys_mode', 'replace')
        if self.custom_keys_mode not in CUSTOM_KEYS_MODES:
            raise ValueError(f'paramwise_cfg.custom_keys_mode must be one of {CUSTOM_KEYS_MODES}, '
                             f'got {self.custom_keys_mode!r}')
        if self.base_lr is None:
            raise ValueError(f'{name} needs optimizer.lr: the per-layer lrs are scaled from it')
        _check_number('optimizer.lr', self.base_lr, 0.)
        if self.base_wd is None:
            raise ValueError(f'{name} needs optimizer.weight_decay (0 for none): it sets the '
                             'weight decay of each group explicitly')
        _check_number('optimizer.weight_decay', self.base_wd, 0.)

    @staticmethod
    def _parse_custom_keys(custom_keys: Any) -> Dict[str, Tuple[float, float]]:
        """``{key: (lr_mult, decay_mult)}`` from ``paramwise_cfg.custom_keys``."""
        if not isinstance(custom_keys, dict):
            raise TypeError('paramwise_cfg.custom_keys must be a dict {name substring: dict('
                            f'lr_mult=..., decay_mult=...)}}, got {type(custom_keys).__name__}')
        parsed = {}
        for key, mults in custom_keys.items():
            if not isinstance(mults, dict):
                raise TypeError(f'paramwise_cfg.custom_keys[{key!r}] must be a dict with keys '
                                f'{list(CUSTOM_KEY_FIELDS)}, got {mults!r}')
            unknown = sorted(set(mults) - set(CUSTOM_KEY_FIELDS))
            if unknown:
                raise ValueError(f'Unknown field(s) {unknown} in paramwise_cfg.custom_keys'
                                 f'[{key!r}]; valid fields: {list(CUSTOM_KEY_FIELDS)}')
            parsed[key] = tuple(_check_number(f'paramwise_cfg.custom_keys[{key!r}].{field}',
                                              mults.get(field, 1.), 0.)
                                for field in CUSTOM_KEY_FIELDS)
        return parsed

    def custom_key_of(self, param_name: str) -> Optional[str]:
        """The ``custom_keys`` entry that governs a parameter: the longest key contained in its
        full name (ties: alphabetical, as mmengine sorts them), or None."""
        matches = [key for key in self.custom_keys if key in param_name]
        return min(matches, key=lambda key: (-len(key), key)) if matches else None

    def param_mults(self, param_name: str, kind: str) -> Tuple[float, float]:
        """``(lr_mult, decay_mult)`` of a parameter before the layer decay: mmengine's
        ``DefaultOptimWrapperConstructor`` values in ``'replace'`` mode; in ``'multiply'`` mode
        the rules' values times the governing custom key's.

        Args:
            param_name (str): Full parameter name.
            kind (str): Its :func:`weight_decay_kind`.
        """
        lr_mult = self.bias_lr_mult if param_name.rsplit('.', 1)[-1] == 'bias' and \
            kind != 'norm' else 1.
        decay_mult = self.decay_mults[kind]
        key = self.custom_key_of(param_name)
        if key is None:
            return lr_mult, decay_mult
        key_lr_mult, key_decay_mult = self.custom_keys[key]
        if self.custom_keys_mode == 'replace':  # the key overrides every other rule
            return key_lr_mult, key_decay_mult
        return lr_mult * key_lr_mult, decay_mult * key_decay_mult

    def _check_custom_keys_apply(self, model: nn.Module) -> None:
        """Raise a ValueError naming each ``custom_keys`` entry that governs no parameter of
        ``model`` (frozen ones included): it would otherwise be dropped without a word."""
        if not self.custom_keys:
            return
        names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
        governing = {self.custom_key_of(name) for name in names}
        unused = sorted(set(self.custom_keys) - governing)
        if not unused:
            return
        reasons = []
        for key in unused:
            matched = [name for name in names if key in name]
            if matched:
                reasons.append(f'{key!r}: every parameter it matches (e.g. {matched[0]}) is '
                               f'governed by the longer key {self.custom_key_of(matched[0])!r}')
            else:
                reasons.append(f'{key!r}: no parameter name contains it')
        raise ValueError(
            f'paramwise_cfg.custom_keys {unused} apply to no parameter of this '
            f'{type(model).__name__} ({"; ".join(reasons)}). A key written for another backbone '
            "(e.g. Swin's 'relative_position_bias_table') does nothing here: remove it, or replace "
            'the inherited dict with custom_keys=dict(_delete_=True, ...), or correct the name.')

    @staticmethod
    def _find_backbone(model: nn.Module) -> nn.Module:
        """``model.backbone`` (``model.module.backbone`` under DDP) with a usable
        ``get_layer_depth``; raises a TypeError naming what is missing otherwise."""
        name = LayerDecayOptimWrapperConstructor.__name__
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, nn.Module):
            raise TypeError(f'{name} needs a model with a `backbone` submodule that reports layer '
                            f'depths; {type(model).__name__} has no `backbone` attribute.')
        get_layer_depth = getattr(backbone, 'get_layer_depth', None)
        if not callable(get_layer_depth):
            raise TypeError(
                f'{name} needs model.backbone.get_layer_depth(param_name, prefix, decay_type, '
                f'num_layers) -> (layer_id, max_layer_id); {type(backbone).__name__} has no '
                '`get_layer_depth` method (use cnxv2_dense.ConvNeXtV2 or add one).')
        accepted = inspect.signature(get_layer_depth).parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
        missing = [arg for arg in ('decay_type', 'num_layers') if arg not in accepted]
        if missing and not takes_kwargs:
            raise TypeError(f'{name}: {type(backbone).__name__}.get_layer_depth must accept the '
                            f'argument(s) {missing} (as cnxv2_dense.ConvNeXtV2 does).')
        return backbone

    def _backbone_layer_ids(self, backbone: nn.Module) -> Tuple[Dict[str, int], int]:
        """Layer id of every backbone parameter (names relative to the backbone) and the max id.

        Raises:
            ValueError: If the backbone has no parameters, reports inconsistent max ids, or gives
                an id outside ``[0, max_id]`` (``num_layers`` too small for the arch).
        """
        ids: Dict[str, int] = {}
        max_ids = set()
        for name, _ in backbone.named_parameters():
            layer_id, max_id = backbone.get_layer_depth(
                _BACKBONE_PREFIX + name, prefix=_BACKBONE_PREFIX, decay_type=self.decay_type,
                num_layers=self.num_layers)
            if not 0 <= layer_id <= max_id:
                default = getattr(backbone, 'num_layers', None)
                hint = f" (the backbone's default is {default})" if default is not None else ''
                raise ValueError(
                    f'backbone.{name} gets layer id {layer_id}, outside [0, {max_id}]: '
                    f'paramwise_cfg.num_layers={self.num_layers} is too small for this '
                    f'{type(backbone).__name__}{hint}.')
            ids[name] = int(layer_id)
            max_ids.add(int(max_id))
        if len(max_ids) != 1:
            raise ValueError(f'{type(backbone).__name__}.get_layer_depth must report one max '
                             f'layer id for all parameters, got {sorted(max_ids)}')
        return ids, max_ids.pop()

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[int] = None) -> None:
        """Append the layer-decay parameter groups of a whole model to ``params``.

        Called once by ``__call__`` with the (unwrapped) model; unlike the parent method it does
        not recurse.

        Args:
            params (list[dict]): Parameter groups, extended in place.
            module (nn.Module): The model; must have ``backbone.get_layer_depth``.
            prefix (str): Prepended to the names in ``param_names`` and in the logs. Defaults
                to ''.
            is_dcn_module (int, optional): Unused; kept for the parent's signature.
        """
        if is_model_wrapper(module):
            module = module.module
        backbone = self._find_backbone(module)
        self._check_custom_keys_apply(module)
        backbone_ids, max_id = self._backbone_layer_ids(backbone)
        num_layers = max_id - 1
        self._warn_if_layers_merge(backbone, num_layers)

        groups: Dict[Tuple[int, float, float], dict] = {}
        details: List[str] = []
        num_frozen = 0
        seen = set()
        for module_name, owner in module.named_modules():
            for local_name, param in owner.named_parameters(recurse=False):
                if id(param) in seen:
                    continue
                seen.add(id(param))
                name = f'{module_name}.{local_name}' if module_name else local_name
                shown = f'{prefix}.{name}' if prefix else name
                if not param.requires_grad:
                    num_frozen += 1
                    details.append(f'{shown}: frozen (requires_grad=False), left out')
                    continue
                in_backbone = name.startswith(_BACKBONE_PREFIX)
                layer_id = backbone_ids[name[len(_BACKBONE_PREFIX):]] if in_backbone else max_id
                kind = weight_decay_kind(name, param, owner)
                lr_mult, decay_mult = self.param_mults(name, kind)
                lr_scale = lr_decay_scale(layer_id, num_layers, self.decay_rate) * lr_mult
                weight_decay = self.base_wd * decay_mult
                key = (layer_id, lr_scale, weight_decay)
                if key not in groups:
                    groups[key] = dict(params=[], param_names=[], lr=self.base_lr * lr_scale,
                                       weight_decay=weight_decay, layer_id=layer_id,
                                       lr_scale=lr_scale)
                groups[key]['params'].append(param)
                groups[key]['param_names'].append(shown)
                custom_key = self.custom_key_of(name)
                rule = kind if custom_key is None else f'{kind}, custom key {custom_key!r}'
                details.append(f'{shown}: layer_id={layer_id} lr_scale={lr_scale:.6g} '
                               f'weight_decay={weight_decay:g} ({rule})')

        ordered = [groups[key] for key in sorted(groups)]
        params.extend(ordered)
        print_log(self._summary(ordered, backbone, num_layers, num_frozen), logger='current',
                  level=logging.INFO)
        for line in details:
            print_log(f'{type(self).__name__}: {line}', logger='current', level=logging.DEBUG)

    def _warn_if_layers_merge(self, backbone: nn.Module, num_layers: int) -> None:
        """Warn when an explicit ``num_layers`` below the backbone's default merges layers."""
        default = getattr(backbone, 'num_layers', None)
        if (self.decay_type == 'layer_wise' and isinstance(default, int)
                and num_layers < default):
            print_log(f'{type(self).__name__}: num_layers={num_layers} is below the default '
                      f'{default} of this {type(backbone).__name__}, so its deepest stage-2 '
                      'blocks share a layer id (and lr) with the layers above them.',
                      logger='current', level=logging.WARNING)

    def _summary(self, groups: List[dict], backbone: nn.Module, num_layers: int,
                 num_frozen: int) -> str:
        """One table with a row per parameter group."""
        source = 'explicit' if self.num_layers is not None else 'backbone default'
        lines = [
            f'{type(self).__name__}: {self.decay_type} decay_rate={self.decay_rate:g}, '
            f'num_layers={num_layers} ({source}, {type(backbone).__name__}), '
            f'base lr={self.base_lr:g}, base weight_decay={self.base_wd:g}, '
            f'{len(groups)} groups, {num_frozen} frozen parameters left out'
            + (f', custom_keys ({self.custom_keys_mode}): {sorted(self.custom_keys)}'
               if self.custom_keys else ''),
            f'{"layer_id":>8} {"lr_scale":>10} {"lr":>11} {"weight_decay":>12} '
            f'{"params":>6} {"numel":>10}',
        ]
        for group in groups:
            numel = sum(p.numel() for p in group['params'])
            lines.append(f'{group["layer_id"]:>8d} {group["lr_scale"]:>10.4g} '
                         f'{group["lr"]:>11.4g} {group["weight_decay"]:>12.4g} '
                         f'{len(group["params"]):>6d} {numel:>10d}')
        return '\n'.join(lines)
