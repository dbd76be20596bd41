"""Every shipped COCO detection config parses and builds (tiny backbone, no pretrained file), its
optimiser builds with the layer-decay constructor, and Mask R-CNN / Cascade Mask R-CNN take a
loss step and a predict step on CPU."""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from .conftest import ROOT, TINY_ARCH

# The drop path rate of the custom-data template: it inherits the V2-T 1x config's. The rates of
# the *_coco.py configs are pinned to their published values (literals with their sources) in
# test_published_recipes.py; the model's last block must get the config's rate.
CUSTOM_DATA_DROP_PATH = 0.4

DET_CONFIGS = sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'configs', '*coco*.py')) +
    glob.glob(os.path.join(ROOT, 'configs', '*custom_data*.py')))


def _to_cpu_bn(cfg):
    """SyncBN -> BN everywhere (SyncBN needs a distributed GPU run)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SyncBN':
            cfg['type'] = 'BN'
        for value in cfg.values():
            _to_cpu_bn(value)
    elif isinstance(cfg, list):
        for value in cfg:
            _to_cpu_bn(value)


def load_tiny(name):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', name))
    assert cfg.model.backbone.type == 'cnxv2_dense.ConvNeXtV2'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'  # one path, overridable
    cfg.model.backbone.arch = dict(TINY_ARCH)
    cfg.model.backbone.init_cfg = None
    # The module that takes the backbone's maps: the neck (Mask R-CNN, DINO) or, in Mask2Former,
    # the head's pixel decoder; it gets the channels of the stages the backbone returns.
    receiver = cfg.model.neck if 'neck' in cfg.model else cfg.model.panoptic_head
    receiver.in_channels = [TINY_ARCH['dims'][i] for i in cfg.model.backbone.out_indices]
    _to_cpu_bn(cfg.model)
    return cfg


def build(cfg):
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def test_all_expected_configs_ship():
    for name in ('mask_rcnn_cnxv2_t_coco.py', 'mask_rcnn_cnxv2_b_coco.py',
                 'mask_rcnn_cnxv2_l_coco.py', 'mask_rcnn_cnxv2_h_coco.py',
                 'mask_rcnn_cnxv2_t_1x_coco.py',
                 'cascade_mask_rcnn_cnxv2_t_coco.py', 'cascade_mask_rcnn_cnxv2_b_coco.py',
                 'cascade_mask_rcnn_cnxv2_l_coco.py'):
        assert name in DET_CONFIGS


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_config_builds_with_its_optimiser(name):
    cfg = load_tiny(name)
    assert cfg.custom_imports.imports == ['cnxv2_dense']
    rate = cfg.model.backbone.drop_path_rate
    if name == 'mask_rcnn_cnxv2_t_custom_data.py':
        assert rate == CUSTOM_DATA_DROP_PATH
    model = build(cfg)
    # stochastic depth grows linearly from 0 (first block) to the recipe's rate (last block)
    assert isinstance(model.backbone.stages[0][0].drop_path, torch.nn.Identity)
    last = model.backbone.stages[3][-1].drop_path
    assert last.drop_prob == pytest.approx(rate)
    middle = model.backbone.stages[2][0].drop_path  # block 3 of 5 in the tiny arch: rate / 2
    assert middle.drop_prob == pytest.approx(rate / 2)
    wrapper_cfg = dict(cfg.optim_wrapper, type='OptimWrapper')  # AMP needs a GPU
    wrapper_cfg.pop('loss_scale', None)
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    groups = wrapper.optimizer.param_groups
    decay = cfg.optim_wrapper.paramwise_cfg.decay_rate
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert max(g['lr'] for g in groups) == pytest.approx(base_lr)  # heads keep scale 1
    assert min(g['lr'] for g in groups) < base_lr * decay  # the stem is decayed most
    assert all(g['weight_decay'] == 0 for g in groups if any('grn' in n for n in g['param_names']))


@pytest.mark.parametrize('name', ['mask_rcnn_cnxv2_t_coco.py', 'cascade_mask_rcnn_cnxv2_t_coco.py'])
def test_loss_and_predict_step(name):
    from mmdet.testing import demo_mm_inputs
    model = build(load_tiny(name))
    packed = demo_mm_inputs(batch_size=2, image_shapes=[(3, 128, 160), (3, 160, 128)],
                            num_items=[3, 2], num_classes=80, with_mask=True)
    model.train()
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    total = sum(v if isinstance(v, torch.Tensor) else sum(v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2
    assert results[0].pred_instances.bboxes.shape[-1] == 4
