"""Layer-wise lr decay: exact parameter groups, parity with the ConvNeXt V1 rule, real mmdet /
mmseg models through mmengine's ``build_optim_wrapper``, and the error messages."""
import logging
import uuid
from typing import Dict, List, Optional, Tuple

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from torch import nn

from cnxv2_dense.models import ConvNeXtV2, get_layer_id
from cnxv2_dense.models.layers import GRN
from cnxv2_dense.optim import LayerDecayOptimWrapperConstructor

from .conftest import (DEMO_CONFIG, TINY_ARCH, build_demo_detector, v1_layer_id, v1_lr_scale,
                       v1_weight_decay)

CONSTRUCTOR = 'cnxv2_dense.LayerDecayOptimWrapperConstructor'
LR, WD = 0.1, 0.05
# A third stage as deep as ConvNeXt V2-T's (9 blocks): the published rule gives num_layers 6.
DEEP_ARCH = dict(depths=[1, 1, 9, 1], dims=[8, 16, 32, 64])


# Named examples for the depth-9 arch, num_layers 6: (name, layer_wise id, stage_wise id).
V1_EXAMPLES = [
    ('backbone.downsample_layers.0.0.weight', 0, 0),
    ('backbone.downsample_layers.0.1.bias', 0, 0),
    ('backbone.stages.0.0.dwconv.weight', 1, 1),
    ('backbone.downsample_layers.1.1.weight', 2, 0),
    ('backbone.stages.1.0.grn.gamma', 2, 2),
    ('backbone.downsample_layers.2.0.weight', 3, 0),
    ('backbone.stages.2.0.pwconv1.weight', 3, 3),
    ('backbone.stages.2.2.norm.bias', 3, 3),
    ('backbone.stages.2.3.dwconv.weight', 4, 3),
    ('backbone.stages.2.7.pwconv1.weight', 5, 3),
    ('backbone.stages.2.8.grn.beta', 5, 3),
    ('backbone.downsample_layers.3.1.weight', 6, 0),
    ('backbone.stages.3.0.dwconv.weight', 6, 4),
    ('backbone.norm3.weight', 7, 7),
    ('neck.x', 7, 7),
]


# --- Helpers ------------------------------------------------------------------------------------

class ToyDetector(nn.Module):
    """A backbone plus a neck conv and a head norm, like a detector's top level."""

    def __init__(self, backbone: nn.Module, out_channels: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(out_channels, 8, 1)
        self.head = nn.BatchNorm2d(8)


def optim_cfg(optimizer: str = 'AdamW', **paramwise_cfg) -> dict:
    return dict(type='OptimWrapper', constructor=CONSTRUCTOR,
                optimizer=dict(type=optimizer, lr=LR, weight_decay=WD),
                paramwise_cfg=paramwise_cfg)


def build_groups(model: nn.Module, **paramwise_cfg) -> List[dict]:
    init_default_scope('mmdet')
    return build_optim_wrapper(model, optim_cfg(**paramwise_cfg)).optimizer.param_groups


def per_param(groups: List[dict]) -> Dict[str, Tuple[float, float]]:
    """{name: (lr, weight_decay)} over all groups; every parameter is in exactly one group."""
    table = {}
    for group in groups:
        for name in group['param_names']:
            assert name not in table, f'{name} is in two groups'
            table[name] = (group['lr'], group['weight_decay'])
    return table


def tiny_detector(**backbone_kwargs) -> ToyDetector:
    backbone_kwargs.setdefault('arch', TINY_ARCH)
    return ToyDetector(ConvNeXtV2(out_indices=(3,), **backbone_kwargs))


def block(stage: int, index: int, params: Tuple[str, ...]) -> List[str]:
    return [f'backbone.stages.{stage}.{index}.{p}' for p in params]


# Parameters of a ConvNeXt V2 block, split by the weight-decay rule.
BLOCK_DECAY = ('dwconv.weight', 'pwconv1.weight', 'pwconv2.weight')
BLOCK_NO_DECAY = ('dwconv.bias', 'norm.weight', 'norm.bias', 'pwconv1.bias', 'grn.gamma',
                  'grn.beta', 'pwconv2.bias')
OUTSIDE_NO_DECAY = ['backbone.norm3.weight', 'backbone.norm3.bias', 'neck.bias', 'head.weight',
                    'head.bias']

# Tiny arch (depths 1,1,2,1 -> default num_layers 4), decay 0.5: (layer_id, lr, wd, names).
EXPECTED_LAYER_WISE = [
    (0, LR * 0.5 ** 5, 0., ['backbone.downsample_layers.0.0.bias',
                            'backbone.downsample_layers.0.1.weight',
                            'backbone.downsample_layers.0.1.bias']),
    (0, LR * 0.5 ** 5, WD, ['backbone.downsample_layers.0.0.weight']),
    (1, LR * 0.5 ** 4, 0., block(0, 0, BLOCK_NO_DECAY)),
    (1, LR * 0.5 ** 4, WD, block(0, 0, BLOCK_DECAY)),
    (2, LR * 0.5 ** 3, 0., ['backbone.downsample_layers.1.0.weight',
                            'backbone.downsample_layers.1.0.bias',
                            'backbone.downsample_layers.1.1.bias'] + block(1, 0, BLOCK_NO_DECAY)),
    (2, LR * 0.5 ** 3, WD, ['backbone.downsample_layers.1.1.weight'] + block(1, 0, BLOCK_DECAY)),
    (3, LR * 0.5 ** 2, 0., ['backbone.downsample_layers.2.0.weight',
                            'backbone.downsample_layers.2.0.bias',
                            'backbone.downsample_layers.2.1.bias']
     + block(2, 0, BLOCK_NO_DECAY) + block(2, 1, BLOCK_NO_DECAY)),
    (3, LR * 0.5 ** 2, WD, ['backbone.downsample_layers.2.1.weight']
     + block(2, 0, BLOCK_DECAY) + block(2, 1, BLOCK_DECAY)),
    (4, LR * 0.5, 0., ['backbone.downsample_layers.3.0.weight',
                       'backbone.downsample_layers.3.0.bias',
                       'backbone.downsample_layers.3.1.bias'] + block(3, 0, BLOCK_NO_DECAY)),
    (4, LR * 0.5, WD, ['backbone.downsample_layers.3.1.weight'] + block(3, 0, BLOCK_DECAY)),
    (5, LR, 0., OUTSIDE_NO_DECAY),
    (5, LR, WD, ['neck.weight']),
]
EXPECTED_STAGE_WISE = [
    (0, LR * 0.5 ** 5, 0., ['backbone.downsample_layers.0.0.bias',
                            'backbone.downsample_layers.0.1.weight',
                            'backbone.downsample_layers.0.1.bias',
                            'backbone.downsample_layers.1.0.weight',
                            'backbone.downsample_layers.1.0.bias',
                            'backbone.downsample_layers.1.1.bias',
                            'backbone.downsample_layers.2.0.weight',
                            'backbone.downsample_layers.2.0.bias',
                            'backbone.downsample_layers.2.1.bias',
                            'backbone.downsample_layers.3.0.weight',
                            'backbone.downsample_layers.3.0.bias',
                            'backbone.downsample_layers.3.1.bias']),
    (0, LR * 0.5 ** 5, WD, ['backbone.downsample_layers.0.0.weight',
                            'backbone.downsample_layers.1.1.weight',
                            'backbone.downsample_layers.2.1.weight',
                            'backbone.downsample_layers.3.1.weight']),
    (1, LR * 0.5 ** 4, 0., block(0, 0, BLOCK_NO_DECAY)),
    (1, LR * 0.5 ** 4, WD, block(0, 0, BLOCK_DECAY)),
    (2, LR * 0.5 ** 3, 0., block(1, 0, BLOCK_NO_DECAY)),
    (2, LR * 0.5 ** 3, WD, block(1, 0, BLOCK_DECAY)),
    (3, LR * 0.5 ** 2, 0., block(2, 0, BLOCK_NO_DECAY) + block(2, 1, BLOCK_NO_DECAY)),
    (3, LR * 0.5 ** 2, WD, block(2, 0, BLOCK_DECAY) + block(2, 1, BLOCK_DECAY)),
    (4, LR * 0.5, 0., block(3, 0, BLOCK_NO_DECAY)),
    (4, LR * 0.5, WD, block(3, 0, BLOCK_DECAY)),
    (5, LR, 0., OUTSIDE_NO_DECAY),
    (5, LR, WD, ['neck.weight']),
]


# --- Exact groups and the V1 rule ---------------------------------------------------------------

@pytest.mark.parametrize('decay_type,expected', [('layer_wise', EXPECTED_LAYER_WISE),
                                                 ('stage_wise', EXPECTED_STAGE_WISE)])
def test_exact_groups_for_tiny_arch(decay_type, expected):
    groups = build_groups(tiny_detector(), decay_rate=0.5, decay_type=decay_type)
    got = [(g['layer_id'], g['lr'], g['weight_decay'], g['param_names']) for g in groups]
    assert [(i, wd, names) for i, _, wd, names in got] == [
        (i, wd, names) for i, _, wd, names in expected]
    assert [lr for _, lr, _, _ in got] == pytest.approx([lr for _, lr, _, _ in expected])
    assert [g['lr_scale'] for g in groups] == pytest.approx([lr / LR for _, lr, _, _ in expected])


@pytest.mark.parametrize('name,layer_wise,stage_wise', V1_EXAMPLES)
def test_v1_rule_table(name, layer_wise, stage_wise):
    assert v1_layer_id(name, 'layer_wise', 6) == layer_wise
    assert v1_layer_id(name, 'stage_wise', 6) == stage_wise
    backbone = ConvNeXtV2(arch=DEEP_ARCH)
    for decay_type, expected in (('layer_wise', layer_wise), ('stage_wise', stage_wise)):
        assert backbone.get_layer_depth(name, prefix='backbone.', decay_type=decay_type) == (
            expected, 7)


@pytest.mark.parametrize('arch,num_layers', [(DEEP_ARCH, 6), (TINY_ARCH, 4)])
@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_scales_and_weight_decay_equal_the_v1_rule(arch, num_layers, decay_type):
    model = ToyDetector(ConvNeXtV2(arch=arch))
    table = per_param(build_groups(model, decay_rate=0.9, decay_type=decay_type))
    params = dict(model.named_parameters())
    assert set(table) == set(params)
    for name, (lr, weight_decay) in table.items():
        assert lr == pytest.approx(LR * v1_lr_scale(name, decay_type, num_layers, 0.9)), name
        assert weight_decay == v1_weight_decay(name, params[name], WD), name


def test_num_layers_defaults_from_arch_and_an_explicit_value_is_honoured():
    deep = ToyDetector(ConvNeXtV2(arch=DEEP_ARCH))
    assert max(g['layer_id'] for g in build_groups(deep, decay_rate=0.9)) == 7
    base_like = ToyDetector(ConvNeXtV2(arch=dict(depths=[1, 1, 27, 1], dims=[8, 8, 8, 8])), 8)
    table = per_param(build_groups(base_like, decay_rate=0.9))
    assert table['backbone.stages.3.0.dwconv.weight'][0] == pytest.approx(LR * 0.9 ** 1)  # id 12
    assert table['backbone.stages.2.26.dwconv.weight'][0] == pytest.approx(LR * 0.9 ** 2)  # id 11

    table = per_param(build_groups(deep, decay_rate=0.9, num_layers=8))
    assert table['backbone.stages.3.0.dwconv.weight'][0] == pytest.approx(LR * 0.9 ** 1)  # id 8
    assert table['backbone.stages.2.8.dwconv.weight'][0] == pytest.approx(LR * 0.9 ** 4)  # id 5
    assert table['neck.weight'][0] == pytest.approx(LR)
    for name, (lr, _) in table.items():
        assert lr == pytest.approx(LR * v1_lr_scale(name, 'layer_wise', 8, 0.9)), name


def test_frozen_parameters_are_left_out():
    model = tiny_detector(frozen_stages=1)
    names = set(per_param(build_groups(model, decay_rate=0.9)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == trainable
    assert 'backbone.stages.0.0.pwconv1.weight' not in names
    assert 'backbone.downsample_layers.1.1.weight' in names


def test_ddp_wrapped_model_is_unwrapped(tmp_path):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "pg"}', rank=0, world_size=1)
    try:
        model = tiny_detector()
        ddp = nn.parallel.DistributedDataParallel(model)
        assert per_param(build_groups(ddp, decay_rate=0.5)) == per_param(
            build_groups(model, decay_rate=0.5))
    finally:
        dist.destroy_process_group()


# --- Weight-decay rules and mmengine's paramwise options ------------------------------------------

class OfficialStyleGRN(nn.Module):
    """GRN as the official V2 code stores it: gamma / beta of shape (1, 1, 1, C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))


class DummyBackbone(nn.Module):
    """Foreign-layout backbone: GRNs with 4-D params, a 2-D norm weight, a 2-D bias."""

    def __init__(self) -> None:
        super().__init__()
        block = nn.Module()
        block.grn = OfficialStyleGRN(8)
        block.response_norm = GRN(8)  # our class, params reshaped as in an official checkpoint
        block.response_norm.gamma = nn.Parameter(torch.zeros(1, 1, 1, 8))
        block.response_norm.beta = nn.Parameter(torch.zeros(1, 1, 1, 8))
        block.norm = nn.LayerNorm((4, 8))
        block.pwconv1 = nn.Linear(8, 8)
        block.sparse = nn.Module()
        block.sparse.bias = nn.Parameter(torch.zeros(1, 8))  # MinkowskiEngine-style 2-D bias
        self.stages = nn.ModuleList([nn.Sequential(block)])

    def get_layer_depth(self, param_name: str, prefix: str = '', decay_type: str = 'layer_wise',
                        num_layers=None) -> Tuple[int, int]:
        num_layers = 6 if num_layers is None else num_layers
        return get_layer_id(param_name[len(prefix):], num_layers, decay_type), num_layers + 1


def test_grn_norm_and_bias_get_no_weight_decay_whatever_their_shape():
    table = per_param(build_groups(ToyDetector(DummyBackbone()), decay_rate=0.5))
    no_decay = ['grn.gamma', 'grn.beta', 'response_norm.gamma', 'response_norm.beta',
                'norm.weight', 'norm.bias', 'pwconv1.bias', 'sparse.bias']
    for suffix in no_decay:
        assert table[f'backbone.stages.0.0.{suffix}'] == (pytest.approx(LR * 0.5 ** 6), 0.)
    assert table['backbone.stages.0.0.pwconv1.weight'] == (pytest.approx(LR * 0.5 ** 6), WD)


def test_custom_keys_override_the_rules_and_take_the_decay_scale():
    table = per_param(build_groups(
        tiny_detector(), decay_rate=0.5,
        custom_keys={'neck': dict(lr_mult=0.1, decay_mult=2.),
                     'backbone.stages.0': dict(lr_mult=4.),
                     'backbone.stages.0.0.pwconv1': dict(decay_mult=0.5)}))
    assert table['neck.weight'] == (pytest.approx(LR * 0.1), pytest.approx(WD * 2.))
    # As in mmengine, a matching key replaces the bias / norm rules (decay_mult defaults to 1).
    assert table['neck.bias'] == (pytest.approx(LR * 0.1), pytest.approx(WD * 2.))
    assert table['backbone.stages.0.0.norm.weight'] == (pytest.approx(LR * 0.5 ** 4 * 4.), WD)
    assert table['backbone.stages.0.0.dwconv.weight'] == (pytest.approx(LR * 0.5 ** 4 * 4.), WD)
    # The longest matching key wins: pwconv1 gets decay_mult 0.5 and no lr_mult.
    for param in ('weight', 'bias'):
        assert table[f'backbone.stages.0.0.pwconv1.{param}'] == (pytest.approx(LR * 0.5 ** 4),
                                                                 pytest.approx(WD * 0.5))
    assert table['backbone.stages.1.0.dwconv.weight'] == (pytest.approx(LR * 0.5 ** 3), WD)
    assert table['backbone.stages.1.0.norm.weight'] == (pytest.approx(LR * 0.5 ** 3), 0.)


def test_bias_lr_mult_and_dwconv_decay_mult():
    table = per_param(build_groups(tiny_detector(), decay_rate=0.5, bias_lr_mult=2.,
                                   dwconv_decay_mult=0.3))
    scale = 0.5 ** 4  # stage 0 of the tiny arch: layer id 1 of 4
    assert table['backbone.stages.0.0.pwconv1.bias'] == (pytest.approx(LR * scale * 2.), 0.)
    assert table['backbone.stages.0.0.dwconv.bias'] == (pytest.approx(LR * scale * 2.), 0.)
    assert table['neck.bias'] == (pytest.approx(LR * 2.), 0.)
    # Norm-layer biases keep their layer's lr (mmengine's exception); GRN's beta is no bias.
    assert table['backbone.stages.0.0.norm.bias'] == (pytest.approx(LR * scale), 0.)
    assert table['head.bias'] == (pytest.approx(LR), 0.)
    assert table['backbone.stages.0.0.grn.beta'] == (pytest.approx(LR * scale), 0.)
    assert table['backbone.stages.0.0.dwconv.weight'] == (pytest.approx(LR * scale),
                                                          pytest.approx(WD * 0.3))
    assert table['backbone.stages.0.0.pwconv1.weight'] == (pytest.approx(LR * scale), WD)


# --- mmengine's DefaultOptimWrapperConstructor as the reference for its own keys ---------------

MMENGINE_CASES = [
    dict(bias_lr_mult=2., bias_decay_mult=0.5, norm_decay_mult=0.25, dwconv_decay_mult=0.3,
         flat_decay_mult=0.7),
    dict(custom_keys={'neck': dict(lr_mult=0.1, decay_mult=2.), 'stages.1': dict(lr_mult=3.),
                      'pwconv1': dict(decay_mult=0.), 'stages.1.0.pwconv1': dict(lr_mult=5.)},
         bias_lr_mult=0.5, bias_decay_mult=1., norm_decay_mult=0., dwconv_decay_mult=1.,
         flat_decay_mult=0.2),
]


def v1_style_detector() -> ToyDetector:
    """GRN, layer scale (a 1-D `gamma`), depthwise convs, biases, LayerNorms and a BatchNorm."""
    return ToyDetector(ConvNeXtV2(arch=TINY_ARCH, out_indices=(3,), layer_scale_init_value=0.5))


def mmengine_table(model: nn.Module, paramwise_cfg: dict) -> Dict[str, Tuple[float, float]]:
    """{name: (lr, weight_decay)} from mmengine's DefaultOptimWrapperConstructor."""
    from mmengine.optim import DefaultOptimWrapperConstructor
    constructor = DefaultOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=LR, weight_decay=WD)),
        paramwise_cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    table = {}
    for group in constructor(model).optimizer.param_groups:
        for param in group['params']:
            table[names[id(param)]] = (group['lr'], group['weight_decay'])
    return table


def expected_grn_difference(paramwise_cfg: dict, name: str) -> Optional[float]:
    """The weight decay we give a GRN parameter: mmengine has no GRN among its norm layers (it
    applies flat_decay_mult to GRN's 1-D gamma / beta); here GRN is a norm layer."""
    if any(key in name for key in paramwise_cfg.get('custom_keys', {})):
        return None  # a custom key decides, for both
    return WD * paramwise_cfg['norm_decay_mult']


@pytest.mark.parametrize('paramwise_cfg', MMENGINE_CASES)
def test_groups_equal_mmengines_at_decay_rate_1(paramwise_cfg):
    model = v1_style_detector()
    reference = mmengine_table(model, paramwise_cfg)
    ours = per_param(build_groups(model, decay_rate=1.0, **paramwise_cfg))
    assert set(ours) == set(reference)
    checked_grn = 0
    for name, (lr, weight_decay) in reference.items():
        grn_wd = expected_grn_difference(paramwise_cfg, name) if '.grn.' in name else None
        if grn_wd is not None:
            assert weight_decay == pytest.approx(WD * paramwise_cfg['flat_decay_mult']), name
            weight_decay, checked_grn = grn_wd, checked_grn + 1
        assert ours[name] == (pytest.approx(lr), pytest.approx(weight_decay)), name
    assert checked_grn > 0
    # The cases exercise every rule: several distinct (lr, wd) pairs, not one default.
    assert len(set(reference.values())) >= 5


@pytest.mark.parametrize('paramwise_cfg', MMENGINE_CASES)
def test_groups_equal_mmengines_times_the_v1_decay_scale(paramwise_cfg):
    model = v1_style_detector()
    reference = mmengine_table(model, paramwise_cfg)
    ours = per_param(build_groups(model, decay_rate=0.7, decay_type='layer_wise',
                                  **paramwise_cfg))
    num_layers = 4  # the tiny arch's default (depth-2 third stage)
    for name, (lr, weight_decay) in reference.items():
        grn_wd = expected_grn_difference(paramwise_cfg, name) if '.grn.' in name else None
        weight_decay = weight_decay if grn_wd is None else grn_wd
        scale = v1_lr_scale(name, 'layer_wise', num_layers, 0.7)
        assert ours[name] == (pytest.approx(lr * scale), pytest.approx(weight_decay)), name


@pytest.mark.parametrize('key,decayed', [
    ('bias_decay_mult', ['backbone.stages.0.0.pwconv1.bias', 'neck.bias']),
    ('norm_decay_mult', ['backbone.stages.0.0.norm.weight', 'backbone.stages.0.0.grn.gamma',
                         'backbone.norm3.bias', 'head.weight']),
])
def test_bias_and_norm_decay_mult(key, decayed):
    table = per_param(build_groups(tiny_detector(), decay_rate=0.5, **{key: 0.5}))
    for name, (_, weight_decay) in table.items():
        if name in decayed:
            assert weight_decay == pytest.approx(WD * 0.5), name
    other = 'norm.weight' if key == 'bias_decay_mult' else 'pwconv1.bias'
    assert table[f'backbone.stages.0.0.{other}'][1] == 0.
    assert table['backbone.stages.0.0.pwconv1.weight'][1] == WD


def test_flat_decay_mult_applies_to_other_1d_params():
    model = ToyDetector(ConvNeXtV2(arch=TINY_ARCH, use_grn=False, layer_scale_init_value=1e-6))
    table = per_param(build_groups(model, decay_rate=0.5, flat_decay_mult=1.))
    assert table['backbone.stages.0.0.gamma'][1] == pytest.approx(WD)  # V1 layer scale
    assert table['backbone.stages.0.0.norm.weight'][1] == 0.
    assert per_param(build_groups(model, decay_rate=0.5))['backbone.stages.0.0.gamma'][1] == 0.


# --- Logging --------------------------------------------------------------------------------------

class ListHandler(logging.Handler):

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_one_info_summary_and_per_parameter_debug_lines():
    logger = MMLogger.get_instance(f'test_layer_decay_{uuid.uuid4().hex}', log_level='DEBUG')
    handler = ListHandler()
    logger.addHandler(handler)
    try:
        model = tiny_detector(frozen_stages=0)
        groups = build_groups(model, decay_rate=0.5)
    finally:
        logger.removeHandler(handler)
    ours = [r for r in handler.records
            if r.getMessage().startswith('LayerDecayOptimWrapperConstructor:')]
    info = [r for r in ours if r.levelno == logging.INFO]
    debug = [r for r in ours if r.levelno == logging.DEBUG]
    assert len(info) == 1 and len(ours) == len(info) + len(debug)
    summary = info[0].getMessage().splitlines()
    assert 'layer_wise decay_rate=0.5, num_layers=4 (backbone default' in summary[0]
    assert '4 frozen parameters left out' in summary[0]
    assert summary[1].split() == ['layer_id', 'lr_scale', 'lr', 'weight_decay', 'params', 'numel']
    rows = [line.split() for line in summary[2:]]
    assert [(int(r[0]), float(r[3]), int(r[4])) for r in rows] == [
        (g['layer_id'], g['weight_decay'], len(g['params'])) for g in groups]
    assert len(debug) == sum(1 for _ in model.parameters())
    assert any('backbone.stages.0.0.grn.gamma: layer_id=1 lr_scale=0.0625 weight_decay=0 (norm)'
               in r.getMessage() for r in debug)
    assert any('backbone.downsample_layers.0.0.weight: frozen' in r.getMessage() for r in debug)


# --- Real mmdet and mmseg models ------------------------------------------------------------------

def test_mmdet_mask_rcnn_groups_and_sgd_step_use_the_group_lr_and_wd():
    from mmdet.testing import demo_mm_inputs
    from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
    model = build_demo_detector(dict(DEEP_ARCH))
    init_default_scope('mmdet')
    assert OPTIM_WRAPPER_CONSTRUCTORS.get(CONSTRUCTOR) is LayerDecayOptimWrapperConstructor
    # The demo config's optimizer, switched to layer decay as a user config would do it; SGD
    # without momentum so one step is exactly p -= lr * (grad + wd * p).
    cfg = Config.fromfile(DEMO_CONFIG).optim_wrapper.to_dict()
    cfg.pop('clip_grad')
    cfg.update(constructor=CONSTRUCTOR, paramwise_cfg=dict(decay_rate=0.8, num_layers=6),
               optimizer=dict(type='SGD', lr=1.0, weight_decay=cfg['optimizer']['weight_decay']))
    optim_wrapper = build_optim_wrapper(model, cfg)
    table = per_param(optim_wrapper.optimizer.param_groups)
    params = dict(model.named_parameters())
    assert set(table) == set(params)
    for name, (lr, weight_decay) in table.items():
        assert lr == pytest.approx(v1_lr_scale(name, 'layer_wise', 6, 0.8)), name
        assert weight_decay == v1_weight_decay(name, params[name], 0.05), name
    assert table['roi_head.bbox_head.fc_cls.weight'] == (1.0, 0.05)

    packed = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 128), (3, 128, 96)],
                            num_items=[3, 2], num_classes=3, with_mask=True)
    data = model.data_preprocessor(packed, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    optim_wrapper.backward(loss)
    before = {n: (p.detach().clone(), None if p.grad is None else p.grad.clone())
              for n, p in params.items()}
    optim_wrapper.step()
    moved = 0
    for name, (old, grad) in before.items():
        if grad is None:
            continue
        lr, weight_decay = table[name]
        torch.testing.assert_close(params[name].detach(), old - lr * (grad + weight_decay * old),
                                   rtol=1e-5, atol=1e-6, msg=name)
        moved += int(not torch.equal(params[name].detach(), old))
    assert moved > len(params) // 2


UPERNET_CONFIG = """
_base_ = ['mmseg::_base_/models/upernet_convnext.py']
custom_imports = dict(imports=['cnxv2_dense'], allow_failed_imports=False)
norm_cfg = dict(type='BN', requires_grad=True)  # the base's SyncBN needs a process group
model = dict(
    data_preprocessor=dict(size=(64, 64)),  # the crop size, as mmseg's dataset configs set it
    backbone=dict(_delete_=True, type='cnxv2_dense.ConvNeXtV2',
                  arch=dict(depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])),
    decode_head=dict(in_channels=[8, 16, 32, 64], channels=16, num_classes=4, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=32, channels=16, num_classes=4, norm_cfg=norm_cfg))
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='cnxv2_dense.LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=3e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
"""


def test_mmseg_upernet_groups_and_train_steps(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    config = tmp_path / 'upernet_cnxv2_tiny.py'
    config.write_text(UPERNET_CONFIG)
    cfg = Config.fromfile(str(config))
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    table = per_param(optim_wrapper.optimizer.param_groups)
    params = dict(model.named_parameters())
    assert set(table) == set(params)
    for name, (lr, weight_decay) in table.items():
        assert lr == pytest.approx(3e-3 * v1_lr_scale(name, 'stage_wise', 6, 0.9)), name
        assert weight_decay == v1_weight_decay(name, params[name], 0.05), name
    assert table['backbone.stages.3.0.dwconv.weight'][0] == pytest.approx(3e-3 * 0.9 ** 3)
    assert table['decode_head.conv_seg.weight'] == (3e-3, 0.05)

    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 64, 64)))
        samples.append(sample)
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)
    model.train()
    stem = model.backbone.downsample_layers[0][0].weight.detach().clone()
    losses = [model.train_step(data, optim_wrapper)['loss'].item() for _ in range(5)]
    assert losses[-1] < losses[0]
    assert not torch.equal(model.backbone.downsample_layers[0][0].weight, stem)


# --- Errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('paramwise_cfg,message', [
    (dict(decay_rate=0.9, decay_typ='layer_wise'),
     "Unknown paramwise_cfg key(s) ['decay_typ'] for LayerDecayOptimWrapperConstructor; valid "
     "keys: ['decay_rate', 'decay_type', 'num_layers', 'custom_keys_mode', 'custom_keys', 'bias_lr_mult', "
     "'norm_decay_mult', 'bias_decay_mult', 'dwconv_decay_mult', 'flat_decay_mult']"),
    (dict(decay_rate=0.9, dcn_offset_lr_mult=2.),
     "does not support paramwise_cfg ['dcn_offset_lr_mult']"),
    (dict(decay_rate=0.9, bias_lr_mult=-1.), 'bias_lr_mult must be a number in [0.0, inf)'),
    (dict(decay_rate=0.9, bypass_duplicate=True), 'always added once'),
    (dict(decay_type='layer_wise'), 'needs paramwise_cfg.decay_rate'),
    (None, 'needs paramwise_cfg.decay_rate'),
    (dict(decay_rate=0.), 'decay_rate must be a number in (0.0, 1.0], got 0.0'),
    (dict(decay_rate=1.5), 'decay_rate must be a number in (0.0, 1.0], got 1.5'),
    (dict(decay_rate=0.9, decay_type='block_wise'),
     "decay_type must be one of ('layer_wise', 'stage_wise'), got 'block_wise'"),
    (dict(decay_rate=0.9, num_layers=0), 'num_layers must be a positive int or omitted'),
    (dict(decay_rate=0.9, num_layers='6'), 'num_layers must be a positive int or omitted'),
    (dict(decay_rate=0.9, norm_decay_mult=-1.), 'norm_decay_mult must be a number in [0.0, inf)'),
    (dict(decay_rate=0.9, custom_keys={'neck': dict(lr=1.)}),
     "Unknown field(s) ['lr'] in paramwise_cfg.custom_keys['neck']; valid fields: "
     "['lr_mult', 'decay_mult']"),
])
def test_bad_paramwise_cfg_fails_with_the_valid_choices(paramwise_cfg, message):
    cfg = optim_cfg()
    cfg['paramwise_cfg'] = paramwise_cfg
    init_default_scope('mmdet')
    with pytest.raises(ValueError) as err:
        build_optim_wrapper(tiny_detector(), cfg)
    assert message in str(err.value)


@pytest.mark.parametrize('drop,message', [
    ('lr', 'needs optimizer.lr'), ('weight_decay', 'needs optimizer.weight_decay (0 for none)')])
def test_optimizer_needs_lr_and_weight_decay(drop, message):
    cfg = optim_cfg(decay_rate=0.9)
    cfg['optimizer'].pop(drop)
    init_default_scope('mmdet')
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        build_optim_wrapper(tiny_detector(), cfg)


class NoDepthBackbone(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)


class OldSignatureBackbone(NoDepthBackbone):

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        return 0, 1


@pytest.mark.parametrize('model,message', [
    (nn.Conv2d(3, 8, 3), 'needs a model with a `backbone` submodule that reports layer depths; '
                         'Conv2d has no `backbone` attribute'),
    (ToyDetector(NoDepthBackbone()), 'NoDepthBackbone has no `get_layer_depth` method'),
    (ToyDetector(OldSignatureBackbone()),
     "OldSignatureBackbone.get_layer_depth must accept the argument(s) ['decay_type', "
     "'num_layers']"),
])
def test_model_without_layer_depths_fails_naming_what_is_missing(model, message):
    with pytest.raises(TypeError) as err:
        build_groups(model, decay_rate=0.9)
    assert message in str(err.value)


def test_num_layers_too_small_for_the_arch_fails():
    with pytest.raises(ValueError) as err:
        build_groups(ToyDetector(ConvNeXtV2(arch=DEEP_ARCH)), decay_rate=0.9, num_layers=3)
    assert ('backbone.stages.2.6.dwconv.weight gets layer id 5, outside [0, 4]: '
            "paramwise_cfg.num_layers=3 is too small for this ConvNeXtV2 (the backbone's "
            'default is 6)') in str(err.value)


def test_num_layers_below_the_default_warns_that_layers_merge():
    logger = MMLogger.get_instance(f'test_layer_decay_{uuid.uuid4().hex}')
    handler = ListHandler()
    logger.addHandler(handler)
    try:
        build_groups(ToyDetector(ConvNeXtV2(arch=DEEP_ARCH)), decay_rate=0.9, num_layers=5)
    finally:
        logger.removeHandler(handler)
    warnings = [r.getMessage() for r in handler.records if r.levelno == logging.WARNING]
    assert any('num_layers=5 is below the default 6 of this ConvNeXtV2' in w for w in warnings)
