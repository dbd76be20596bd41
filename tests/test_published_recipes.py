"""Every shipped COCO and ADE20K config carries the published recipe it claims.

The expected values below are literals copied from their sources, one row per config, never
read from the configs themselves:

- V2 paper: "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked Autoencoders"
  (arXiv 2301.00808). Table 6 (COCO Mask R-CNN), Table 7 (ADE20K UperNet), Appendix A.3 (COCO:
  FCMAE pretrained weights as initialisation, 3x = 36 epochs, 32 images, AdamW lr 1e-4 wd 0.05,
  layer-wise decay swept in {0.9, 0.95}, drop path in {0.2 ... 0.5}, LSJ 1024 with scale
  [0.1, 2.0], single-scale test with soft-NMS), Appendix A.4 (ADE20K: IN-1K fine-tuned weights,
  16 images, wd 0.05, decay swept in {0.8, 0.9}, lr in {1e-4, 2e-4, 3e-4}, drop path in
  {0.1 ... 0.4}, 160k iterations, 512 crops, multi-scale test at [0.75 ... 1.25] x 2048x512).
- mmdet V2-B: mmdetection projects/ConvNeXt-V2/configs/mask-rcnn_convnext-v2-b_fpn_lsj-3x-fcmae_
  coco.py (decay 0.95, num_layers 12, drop path 0.4, 1000 warmup iterations, soft-NMS in the
  R-CNN stage), 52.9 box / 46.4 mask AP.
- V1 det: ConvNeXt V1 repository object_detection/configs/convnext/*_3x_coco_in1k|in22k.py and
  object_detection/README.md (schedule_1x warmup 500, steps 27 / 33, multi-scale 480-800).
- V1 seg: ConvNeXt V1 repository semantic_segmentation/configs/convnext/upernet_convnext_*.py
  and semantic_segmentation/README.md (stage-wise 0.9, 1500 warmup, poly, slide test).

Where the paper gives a sweep and no per-size value, the row names which point the config takes
(and why) in `source`; the configs' headers say the same.
"""
import glob
import os

import pytest
from mmengine.config import Config

from .conftest import ROOT

PT_ONLY = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/pt_only/convnextv2_{}_1k_224_fcmae.pt'
IM1K_FT = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im1k/convnextv2_{}_1k_224_ema.pt'
IM22K_FT = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/im22k/convnextv2_{}_22k_224_ema.pt'
# DETR / ConvNeXt V1 multi-scale training scales: shorter side 480, 512, ..., 800, longer <= 1333.
V1_SCALES = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
             (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
# The paper's multi-scale test: [0.75, 0.875, 1.0, 1.125, 1.25] x 2048x512 (x 2560x640 for 640).
TTA_512 = [(1536, 384), (1792, 448), (2048, 512), (2304, 576), (2560, 640)]
TTA_640 = [(1920, 480), (2240, 560), (2560, 640), (2880, 720), (3200, 800)]

V1_DET = dict(lr=1e-4, wd=0.05, decay_type='layer_wise', per_gpu=2, gpus=8, epochs=36,
              milestones=[27, 33], warmup=500, aug='multi-scale', nms='nms', with_cp=False)
PAPER_DET = dict(lr=1e-4, wd=0.05, decay_type='layer_wise', num_layers=12, per_gpu=4, gpus=8,
                 epochs=36, milestones=[27, 33], warmup=1000, aug='lsj', nms='soft_nms',
                 with_cp=False)
SHORT_1X = dict(epochs=12, milestones=[8, 11])

# config -> expected recipe; `targets` are the published numbers its header must quote.
DETECTION = {
    'mask_rcnn_cnxv2_t_coco.py': dict(
        V1_DET, arch='tiny', decay_rate=0.95, num_layers=6, drop_path=0.4,
        checkpoint=PT_ONLY.format('tiny'), targets=['46.2', '41.7'],
        source='V1 det mask_rcnn_convnext_tiny 3x (the paper has no V2-T COCO row); '
               'weights: V2 paper A.3'),
    'mask_rcnn_cnxv2_t_1x_coco.py': dict(
        V1_DET, **SHORT_1X, arch='tiny', decay_rate=0.95, num_layers=6, drop_path=0.4,
        checkpoint=PT_ONLY.format('tiny'), targets=[],
        source='the T 3x recipe on mmdet 1x epochs / steps; no published number'),
    'mask_rcnn_cnxv2_b_coco.py': dict(
        PAPER_DET, arch='base', decay_rate=0.95, drop_path=0.4,
        checkpoint=PT_ONLY.format('base'), targets=['52.9', '46.6', '51.0', '45.6'],
        source='V2 paper A.3 / Table 6; decay and drop path: mmdet V2-B (inside the sweeps)'),
    'mask_rcnn_cnxv2_b_1x_coco.py': dict(
        PAPER_DET, **SHORT_1X, arch='base', decay_rate=0.95, drop_path=0.4,
        checkpoint=PT_ONLY.format('base'), targets=[],
        source='the B 3x recipe on mmdet 1x epochs / steps; no published number'),
    'mask_rcnn_cnxv2_l_coco.py': dict(
        PAPER_DET, arch='large', decay_rate=0.9, drop_path=0.5,
        checkpoint=PT_ONLY.format('large'), targets=['54.4', '47.7', '51.5', '45.8'],
        source='V2 paper A.3 / Table 6; decay 0.9 and drop path 0.5: points of the sweeps'),
    'mask_rcnn_cnxv2_l_1x_coco.py': dict(
        PAPER_DET, **SHORT_1X, arch='large', decay_rate=0.9, drop_path=0.5,
        checkpoint=PT_ONLY.format('large'), targets=[],
        source='the L 3x recipe on mmdet 1x epochs / steps; no published number'),
    'mask_rcnn_cnxv2_h_coco.py': dict(
        PAPER_DET, arch='huge', decay_rate=0.9, drop_path=0.5, per_gpu=2, gpus=16,
        with_cp=True, checkpoint=PT_ONLY.format('huge'), targets=['55.7', '48.9'],
        source='V2 paper A.3 / Table 6 (32 images as 16 x 2, gradient checkpointing)'),
    'cascade_mask_rcnn_cnxv2_t_coco.py': dict(
        V1_DET, arch='tiny', lr=2e-4, decay_rate=0.7, num_layers=6, drop_path=0.4,
        checkpoint=PT_ONLY.format('tiny'), targets=['50.4', '43.7'],
        source='V1 det cascade_mask_rcnn_convnext_tiny 3x in1k (no V2 Cascade in the paper)'),
    'cascade_mask_rcnn_cnxv2_b_coco.py': dict(
        V1_DET, arch='base', lr=2e-4, decay_rate=0.8, num_layers=12, drop_path=0.7,
        checkpoint=PT_ONLY.format('base'), targets=['52.7', '45.6'],
        source='V1 det cascade_mask_rcnn_convnext_base 3x in1k (no V2 Cascade in the paper)'),
    'cascade_mask_rcnn_cnxv2_l_coco.py': dict(
        V1_DET, arch='large', lr=1e-4, decay_rate=0.7, num_layers=12, drop_path=0.7,
        checkpoint=PT_ONLY.format('large'), targets=['54.8', '47.6'],
        source='V1 det cascade_mask_rcnn_convnext_large 3x in22k (no V2 Cascade in the paper)'),
}

V1_SEG = dict(lr=1e-4, wd=0.05, decay_rate=0.9, decay_type='stage_wise', drop_path=0.4,
              per_gpu=2, gpus=8, iters=160000, warmup=1500, crop=512, stride=341,
              test_scale=(2048, 512), tta_scales=TTA_512, with_cp=False)
SEGMENTATION = {
    'upernet_cnxv2_t_ade20k.py': dict(
        V1_SEG, arch='tiny', num_layers=6, checkpoint=IM1K_FT.format('tiny'),
        targets=['46.0', '46.7'],
        source='V2 paper A.4 (weights, test); V1 seg upernet_convnext_tiny_512 (no V2-T row)'),
    'upernet_cnxv2_b_ade20k.py': dict(
        V1_SEG, arch='base', num_layers=12, checkpoint=IM1K_FT.format('base'),
        targets=['52.1', '50.5', '49.9'],
        source='V2 paper A.4 / Table 7; lr, decay, drop path: V1 seg (inside the sweeps)'),
    'upernet_cnxv2_l_ade20k.py': dict(
        V1_SEG, arch='large', num_layers=12, checkpoint=IM1K_FT.format('large'),
        targets=['53.7', '51.6', '50.5'],
        source='V2 paper A.4 / Table 7; lr, decay, drop path: V1 seg (inside the sweeps)'),
    'upernet_cnxv2_l_640_ade20k.py': dict(
        V1_SEG, arch='large', num_layers=12, crop=640, stride=426, test_scale=(2560, 640),
        tta_scales=TTA_640,
        checkpoint=IM22K_FT.format('large'), targets=['53.2', '53.7'],
        source='V2 paper Table 7 "22K ft" setting (640 crops, IN-22K fine-tuned weights); '
               'V1 seg upernet_convnext_large_640'),
    'upernet_cnxv2_h_ade20k.py': dict(
        V1_SEG, arch='huge', num_layers=12, with_cp=True, checkpoint=IM1K_FT.format('huge'),
        targets=['55.0'],
        source='V2 paper A.4 / Table 7; drop path 0.4: top of the sweep'),
}


def _config(name: str) -> Config:
    return Config.fromfile(os.path.join(ROOT, 'configs', name))


def _header(name: str) -> str:
    with open(os.path.join(ROOT, 'configs', name)) as f:
        return f.read().split('_base_ = ')[0]


def _check_optimiser(cfg: Config, row: dict) -> None:
    optim = cfg.optim_wrapper
    assert optim.type == 'AmpOptimWrapper'
    assert optim.constructor == 'cnxv2_dense.LayerDecayOptimWrapperConstructor'
    assert (optim.optimizer.type, tuple(optim.optimizer.betas)) == ('AdamW', (0.9, 0.999))
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (row['lr'], row['wd'])
    assert optim.paramwise_cfg == dict(decay_rate=row['decay_rate'],
                                       decay_type=row['decay_type'],
                                       num_layers=row['num_layers'])


def _check_backbone(cfg: Config, row: dict) -> None:
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch) == ('cnxv2_dense.ConvNeXtV2', row['arch'])
    assert backbone.drop_path_rate == row['drop_path']
    assert backbone.get('with_cp', False) is row['with_cp']
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=row['checkpoint'])


# Mask2Former and DINO configs inherit their toolbox's recipe whole; tests/test_query_heads.py
# checks each against that base config and its quoted number against the toolbox's metafile.
QUERY_HEADS = ('mask2former_', 'dino_')


def test_every_shipped_recipe_config_has_a_row():
    shipped = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'configs', '*_coco.py'))
               + glob.glob(os.path.join(ROOT, 'configs', '*_ade20k.py'))}
    shipped = {name for name in shipped if not name.startswith(QUERY_HEADS)}
    assert shipped == set(DETECTION) | set(SEGMENTATION)


def _check_shared_rows(name, row):
    """What detection and segmentation recipes share: the quoted targets, the backbone, the
    optimiser and the total batch. Returns the loaded config."""
    cfg = _config(name)
    header = _header(name)
    for number in row['targets']:
        assert number in header, f'{name} does not quote {number} ({row["source"]})'
    _check_backbone(cfg, row)
    _check_optimiser(cfg, row)

    total = row['per_gpu'] * row['gpus']
    assert cfg.train_dataloader.batch_size == row['per_gpu']
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=total)
    return cfg


@pytest.mark.parametrize('name', sorted(DETECTION))
def test_detection_recipe_matches_its_source(name):
    row = DETECTION[name]
    cfg = _check_shared_rows(name, row)
    assert cfg.train_cfg.max_epochs == row['epochs']
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.by_epoch, warmup.begin, warmup.end) == (
        'LinearLR', 0.001, False, 0, row['warmup'])
    assert (steps.type, steps.by_epoch, steps.begin, steps.end, steps.gamma) == (
        'MultiStepLR', True, 0, row['epochs'], 0.1)
    assert steps.milestones == row['milestones']

    pipeline = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    if row['aug'] == 'lsj':
        assert pipeline['RandomResize'].scale == (1024, 1024)
        assert pipeline['RandomResize'].ratio_range == (0.1, 2.0)
        assert pipeline['RandomCrop'].crop_size == (1024, 1024)
        assert cfg.model.data_preprocessor.batch_augments == [
            dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]
    else:
        first, second = pipeline['RandomChoice'].transforms
        assert [tuple(s) for s in first[0].scales] == V1_SCALES
        assert [tuple(s) for s in second[-1].scales] == V1_SCALES
        assert second[1].crop_size == (384, 600)
    # Single-scale test at mmdet's COCO size; the NMS of the final detections per the source.
    resizes = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize']
    assert [tuple(t.scale) for t in resizes] == [(1333, 800)]
    assert not any(t.type == 'TestTimeAug' for t in cfg.test_dataloader.dataset.pipeline)
    assert cfg.model.test_cfg.rcnn.nms == dict(type=row['nms'], iou_threshold=0.5)
    assert cfg.model.test_cfg.rpn.nms == dict(type='nms', iou_threshold=0.7)


@pytest.mark.parametrize('name', sorted(SEGMENTATION))
def test_segmentation_recipe_matches_its_source(name):
    row = SEGMENTATION[name]
    cfg = _check_shared_rows(name, row)
    assert cfg.train_cfg.max_iters == row['iters']
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.begin, warmup.end) == (
        'LinearLR', 1e-6, 0, row['warmup'])
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == (
        'PolyLR', 1.0, 0.0, row['warmup'], row['iters'])

    crop = (row['crop'], row['crop'])
    assert cfg.model.data_preprocessor.size == crop
    crops = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop']
    assert crops == [dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75)]
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=crop,
                                      stride=(row['stride'], row['stride']))
    # Without --tta: one scale; with it: the paper's five scales, no flip.
    resizes = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize']
    assert [tuple(t.scale) for t in resizes] == [row['test_scale']]
    assert cfg.tta_model.type == 'SegTTAModel'
    load, tta = cfg.tta_pipeline
    assert load.type == 'LoadImageFromFile' and tta.type == 'TestTimeAug'
    scales, *rest = tta.transforms
    assert [(t.type, tuple(t.scale), t.keep_ratio) for t in scales] == [
        ('Resize', scale, True) for scale in row['tta_scales']]
    assert not any(t.type == 'RandomFlip' for group in rest for t in group)
