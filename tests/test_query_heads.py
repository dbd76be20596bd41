"""Query-based heads on ConvNeXt V2: the Mask2Former (mmseg semantic, mmdet panoptic / instance)
and DINO configs load and build, each family trains one step and predicts with a tiny backbone
on CPU, mmcv's multi-scale deformable attention runs on CPU through its PyTorch path and agrees
with a naive bilinear-sampling loop, and the layer-decay constructor gives the exact groups the
configs' numbers imply (docs/layer_decay.md)."""
import importlib
import math
import os
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

from .conftest import ROOT, TINY_ARCH, v1_lr_scale, v1_weight_decay

IMAGE = 64  # synthetic image side: 1/32 of it is 2 px, the coarsest level still has 2x2 cells

# Widths of the ConvNeXt V2 archs, copied from the paper's Table (T / B / L).
TINY_DIMS, BASE_DIMS, LARGE_DIMS = [96, 192, 384, 768], [128, 256, 512, 1024], \
    [192, 384, 768, 1536]
ALL_STAGES = (0, 1, 2, 3)
# config -> (arch, out_indices, where the backbone's channels go, their expected value).
SHIPPED = {
    'mask2former_cnxv2_t_ade20k.py': ('tiny', ALL_STAGES, 'decode_head', TINY_DIMS),
    'mask2former_cnxv2_b_ade20k.py': ('base', ALL_STAGES, 'decode_head', BASE_DIMS),
    'mask2former_cnxv2_l_ade20k.py': ('large', ALL_STAGES, 'decode_head', LARGE_DIMS),
    'mask2former_cnxv2_t_coco_panoptic.py': ('tiny', ALL_STAGES, 'panoptic_head', TINY_DIMS),
    'mask2former_cnxv2_b_coco_panoptic.py': ('base', ALL_STAGES, 'panoptic_head', BASE_DIMS),
    'mask2former_cnxv2_t_coco_instance.py': ('tiny', ALL_STAGES, 'panoptic_head', TINY_DIMS),
    'mask2former_cnxv2_demo_shapes.py': ('atto', ALL_STAGES, 'decode_head', [40, 80, 160, 320]),
    # DINO-4scale: strides 8-32 (stages 1-3), as the recipe's R-50; DINO-5scale (L): all four.
    'dino_cnxv2_t_coco.py': ('tiny', (1, 2, 3), 'neck', TINY_DIMS[1:]),
    'dino_cnxv2_t_36e_coco.py': ('tiny', (1, 2, 3), 'neck', TINY_DIMS[1:]),
    'dino_cnxv2_b_coco.py': ('base', (1, 2, 3), 'neck', BASE_DIMS[1:]),
    'dino_cnxv2_b_36e_coco.py': ('base', (1, 2, 3), 'neck', BASE_DIMS[1:]),
    'dino_cnxv2_l_coco.py': ('large', ALL_STAGES, 'neck', LARGE_DIMS),
    'dino_cnxv2_l_36e_coco.py': ('large', ALL_STAGES, 'neck', LARGE_DIMS),
    'dino_cnxv2_demo_shapes.py': ('atto', (1, 2, 3), 'neck', [80, 160, 320]),
}


# --- Helpers ------------------------------------------------------------------------------------

def load(name: str) -> Config:
    return Config.fromfile(os.path.join(ROOT, 'configs', name))


def build_model(cfg: Config) -> torch.nn.Module:
    """The config's model from its own toolbox's registry (mmdet or mmseg), no weights read."""
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    return registry.MODELS.build(cfg.model)


def tiny_backbone(cfg: Config) -> List[int]:
    """Swap the config's backbone for TINY_ARCH (same out_indices, no weights); returns the
    channels of its outputs, for the neck / head."""
    backbone = cfg.model.backbone
    backbone.arch = dict(TINY_ARCH)
    backbone.init_cfg = None
    backbone.drop_path_rate = 0.
    return [TINY_ARCH['dims'][i] for i in backbone.out_indices]


def slim_mask2former_head(head: dict, channels: int = 32, heads: int = 4,
                          num_queries: int = 10) -> None:
    """Fewer channels, layers and queries in a Mask2Former head dict (as the demo config does),
    so one step runs in a second; the structure (pixel decoder, masked-attention decoder) stays."""
    head.feat_channels = head.out_channels = channels
    head.num_queries = num_queries
    encoder = head.pixel_decoder.encoder
    encoder.num_layers = 1
    encoder.layer_cfg.self_attn_cfg.update(embed_dims=channels, num_heads=heads)
    encoder.layer_cfg.ffn_cfg.update(embed_dims=channels, feedforward_channels=2 * channels)
    head.pixel_decoder.positional_encoding.num_feats = channels // 2
    head.positional_encoding.num_feats = channels // 2
    decoder = head.transformer_decoder
    decoder.num_layers = 3  # one round over the 3 levels the decoder attends to
    for attn in ('self_attn_cfg', 'cross_attn_cfg'):
        decoder.layer_cfg[attn].update(embed_dims=channels, num_heads=heads)
    decoder.layer_cfg.ffn_cfg.update(embed_dims=channels, feedforward_channels=2 * channels)


def images(n: int = 1) -> List[torch.Tensor]:
    """uint8 (3, H, W) images, as PackDetInputs / PackSegInputs give them."""
    return [torch.randint(0, 256, (3, IMAGE, IMAGE), dtype=torch.uint8) for _ in range(n)]


def two_boxes() -> Tuple[torch.Tensor, np.ndarray]:
    """xyxy boxes of two objects and their (2, H, W) uint8 masks (filled rectangles)."""
    boxes = torch.tensor([[4., 6., 30., 40.], [34., 20., 60., 58.]])
    masks = np.zeros((2, IMAGE, IMAGE), dtype=np.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
        mask[y0:y1, x0:x1] = 1
    return boxes, masks


def det_sample(labels: List[int], with_masks: bool = True, stuff: Tuple[int, ...] = ()):
    """A DetDataSample as mmdet's LoadAnnotations + PackDetInputs would give: HorizontalBoxes,
    int64 labels, BitmapMasks, and for panoptic a gt_sem_seg (1, H, W) with the thing classes
    under their masks, ``stuff`` classes in the two halves of the rest, 255 (void) elsewhere."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    boxes, masks = two_boxes()
    sample = DetDataSample(metainfo=dict(img_shape=(IMAGE, IMAGE), ori_shape=(IMAGE, IMAGE),
                                         scale_factor=(1., 1.), flip=False))
    gt = InstanceData(bboxes=HorizontalBoxes(boxes), labels=torch.tensor(labels))
    if with_masks:
        gt.masks = BitmapMasks(masks, IMAGE, IMAGE)
    sample.gt_instances = gt
    if stuff:
        seg = np.full((IMAGE, IMAGE), 255, dtype=np.int64)
        seg[:IMAGE // 2] = stuff[0]
        seg[IMAGE // 2:] = stuff[-1]
        for label, mask in zip(labels, masks):
            seg[mask.astype(bool)] = label
        sample.gt_sem_seg = PixelData(sem_seg=torch.from_numpy(seg[None]))
    return sample


def loss_step(model: torch.nn.Module, data: dict) -> Dict[str, torch.Tensor]:
    """One training forward and backward as mmengine's train_step does it (without the
    optimizer step); asserts a finite loss and a nonzero gradient inside the backbone."""
    model.train()
    batch = model.data_preprocessor(data, training=True)
    losses = model(**batch, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss), losses
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads), 'no gradient reached the backbone'
    return losses


def predict(model: torch.nn.Module, data: dict) -> list:
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(data, training=False)
        return model(**batch, mode='predict')


def per_param(groups: List[dict]) -> Dict[str, Tuple[float, float]]:
    """{name: (lr, weight_decay)} over all groups; every parameter is in exactly one group."""
    table = {}
    for group in groups:
        for name in group['param_names']:
            assert name not in table, f'{name} is in two groups'
            table[name] = (group['lr'], group['weight_decay'])
    return table


def groups_of(cfg: Config) -> Dict[str, Tuple[float, float]]:
    model = build_model(cfg)
    return per_param(build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups)


def assert_groups(cfg: Config, expected: Dict[str, Tuple[float, float]]) -> None:
    """Each named parameter's (lr, weight decay) in the optimiser the config builds."""
    table = groups_of(cfg)
    for name, (want_lr, want_wd) in expected.items():
        got_lr, got_wd = table[name]
        assert got_lr == pytest.approx(want_lr, rel=1e-9), name
        assert got_wd == pytest.approx(want_wd, abs=1e-12), name


# --- 1. Every shipped config loads and builds ------------------------------------------------

def test_every_new_config_is_listed():
    """SHIPPED names every Mask2Former / DINO config in configs/, so none goes untested."""
    shipped = {name for name in os.listdir(os.path.join(ROOT, 'configs'))
               if name.startswith(('mask2former_', 'dino_'))}
    assert shipped == set(SHIPPED)


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_config_loads_and_builds(name):
    """The config's backbone arch, out_indices and the channels its neck / head expects are
    the ones of that arch; the full-size model builds on CPU (init_cfg=None: nothing is
    downloaded; a few seconds for L) and its backbone's outputs have those channels."""
    arch, out_indices, receiver, channels = SHIPPED[name]
    cfg = load(name)
    backbone = cfg.model.backbone
    assert backbone.type == 'cnxv2_dense.ConvNeXtV2'
    assert (backbone.arch, tuple(backbone.out_indices)) == (arch, out_indices)
    assert list(cfg.model[receiver].in_channels) == channels
    assert 'cnxv2_dense' in cfg.custom_imports.imports
    assert cfg.optim_wrapper.constructor == 'cnxv2_dense.LayerDecayOptimWrapperConstructor'

    backbone.init_cfg = None
    model = build_model(cfg)
    built = model.backbone
    assert [built.dims[i] for i in built.out_indices] == channels


# --- 2. One loss and one predict step per family, tiny backbone ---------------------------------

def test_mask2former_semantic_mmseg_trains_and_predicts():
    """configs/mask2former_cnxv2_demo_shapes.py (mmseg) with TINY_ARCH at 64 px."""
    from mmseg.structures import SegDataSample
    cfg = load('mask2former_cnxv2_demo_shapes.py')
    cfg.model.decode_head.in_channels = tiny_backbone(cfg)
    cfg.model.decode_head.num_queries = 10
    cfg.model.decode_head.train_cfg.num_points = (IMAGE // 4) ** 2
    cfg.model.data_preprocessor.size = (IMAGE, IMAGE)
    model = build_model(cfg)
    num_classes = cfg.model.decode_head.num_classes

    _, masks = two_boxes()
    seg = torch.zeros(1, IMAGE, IMAGE, dtype=torch.int64)  # background = class 0
    seg[0][torch.from_numpy(masks[0]).bool()] = 1
    seg[0][torch.from_numpy(masks[1]).bool()] = 3
    sample = SegDataSample(metainfo=dict(img_shape=(IMAGE, IMAGE), ori_shape=(IMAGE, IMAGE)))
    sample.gt_sem_seg = PixelData(data=seg)
    losses = loss_step(model, dict(inputs=images(), data_samples=[sample]))
    assert {'decode.loss_cls', 'decode.loss_mask', 'decode.loss_dice'} <= set(losses)

    test_sample = SegDataSample(metainfo=dict(img_shape=(IMAGE, IMAGE),
                                              ori_shape=(IMAGE, IMAGE)))
    [out] = predict(model, dict(inputs=images(), data_samples=[test_sample]))
    assert out.pred_sem_seg.data.shape == (1, IMAGE, IMAGE)
    assert out.seg_logits.data.shape == (num_classes, IMAGE, IMAGE)
    assert 0 <= out.pred_sem_seg.data.min() and out.pred_sem_seg.data.max() < num_classes


def mmdet_mask2former(name: str) -> Tuple[torch.nn.Module, Config]:
    """A COCO Mask2Former config with TINY_ARCH, a slimmed head and no 1024 px fixed-size pad."""
    cfg = load(name)
    head = cfg.model.panoptic_head
    head.in_channels = tiny_backbone(cfg)
    slim_mask2former_head(head)
    cfg.model.data_preprocessor.batch_augments = None  # the recipe pads every batch to 1024
    cfg.model.train_cfg.num_points = (IMAGE // 4) ** 2
    return build_model(cfg), cfg


def test_mask2former_panoptic_mmdet_trains_and_predicts():
    """configs/mask2former_cnxv2_t_coco_panoptic.py with TINY_ARCH and a slimmed head, 64 px:
    two things (classes 0 and 5) on two stuff regions (80 and 100, COCO's 80 + 53 classes)."""
    model, cfg = mmdet_mask2former('mask2former_cnxv2_t_coco_panoptic.py')
    assert cfg.model.test_cfg.panoptic_on and cfg.model.test_cfg.instance_on
    sample = det_sample([0, 5], stuff=(80, 100))
    losses = loss_step(model, dict(inputs=images(), data_samples=[sample]))
    assert {'loss_cls', 'loss_mask', 'loss_dice'} <= set(losses)

    [out] = predict(model, dict(inputs=images(), data_samples=[det_sample([0, 5])]))
    assert out.pred_panoptic_seg.sem_seg.shape == (1, IMAGE, IMAGE)
    assert_instances(out.pred_instances, with_masks=True)


def test_mask2former_instance_mmdet_trains_and_predicts():
    """configs/mask2former_cnxv2_t_coco_instance.py with TINY_ARCH and a slimmed head, 64 px."""
    model, cfg = mmdet_mask2former('mask2former_cnxv2_t_coco_instance.py')
    assert not cfg.model.test_cfg.panoptic_on and cfg.model.test_cfg.instance_on
    losses = loss_step(model, dict(inputs=images(), data_samples=[det_sample([0, 5])]))
    assert {'loss_cls', 'loss_mask', 'loss_dice'} <= set(losses)

    [out] = predict(model, dict(inputs=images(), data_samples=[det_sample([0, 5])]))
    assert 'pred_panoptic_seg' not in out
    assert_instances(out.pred_instances, with_masks=True)


def assert_instances(pred: InstanceData, with_masks: bool) -> None:
    n = len(pred)
    assert n > 0
    assert pred.bboxes.shape == (n, 4)
    assert pred.scores.shape == (n,) and pred.labels.shape == (n,)
    assert torch.isfinite(pred.bboxes).all() and torch.isfinite(pred.scores).all()
    if with_masks:
        assert pred.masks.shape == (n, IMAGE, IMAGE)
    else:
        assert 'masks' not in pred


def test_dino_trains_and_predicts():
    """configs/dino_cnxv2_demo_shapes.py with TINY_ARCH (stages 1-3 out), 20 queries, 64 px."""
    cfg = load('dino_cnxv2_demo_shapes.py')
    cfg.model.neck.in_channels = tiny_backbone(cfg)
    cfg.model.num_queries = 20
    cfg.model.dn_cfg.group_cfg.num_dn_queries = 10
    cfg.model.test_cfg.max_per_img = 20
    model = build_model(cfg)
    sample = det_sample([0, 2], with_masks=False)
    losses = loss_step(model, dict(inputs=images(), data_samples=[sample]))
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'enc_loss_cls', 'dn_loss_cls'} <= set(losses)

    [out] = predict(model, dict(inputs=images(), data_samples=[det_sample([0, 2], False)]))
    assert len(out.pred_instances) == 20
    assert_instances(out.pred_instances, with_masks=False)
    assert out.pred_instances.labels.max() < len(cfg.classes)


# --- 3. Multi-scale deformable attention on CPU ------------------------------------------------

def naive_msda(value: torch.Tensor, shapes: List[Tuple[int, int]], locations: torch.Tensor,
               weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention as loops: bilinear sampling with zeros outside the map,
    pixel centres at (i + 0.5) / size (grid_sample's align_corners=False).

    Args:
        value: (bs, num_value, heads, head_dims).
        locations: (bs, num_query, heads, levels, points, 2), (x, y) in [0, 1].
        weights: (bs, num_query, heads, levels, points).

    Returns:
        (bs, num_query, heads * head_dims).
    """
    bs, _, heads, dims = value.shape
    num_query, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    starts = np.cumsum([0] + [h * w for h, w in shapes])
    out = torch.zeros(bs, num_query, heads, dims, dtype=torch.float64)
    for b in range(bs):
        for q in range(num_query):
            for m in range(heads):
                for lvl, (h, w) in enumerate(shapes):
                    level = value[b, starts[lvl]:starts[lvl + 1], m].double().view(h, w, dims)
                    for p in range(points):
                        x = locations[b, q, m, lvl, p, 0].item() * w - 0.5
                        y = locations[b, q, m, lvl, p, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(dims, dtype=torch.float64)
                        for yi, xi in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
                            if 0 <= yi < h and 0 <= xi < w:
                                sample += (1 - abs(x - xi)) * (1 - abs(y - yi)) * level[yi, xi]
                        out[b, q, m] += weights[b, q, m, lvl, p].item() * sample
    return out.view(bs, num_query, heads * dims).float()


def test_multi_scale_deformable_attention_runs_on_cpu():
    """mmcv's MultiScaleDeformableAttention on CPU tensors takes the PyTorch path and gives
    output_proj(sampled) + identity, where `sampled` equals both
    multi_scale_deformable_attn_pytorch and a naive loop fed the module's own value, sampling
    locations and attention weights (recomputed here from its layers, as its forward does)."""
    from mmcv.ops import MultiScaleDeformableAttention
    from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch
    embed, heads, levels, points, bs, num_query = 16, 2, 2, 3, 2, 5
    shapes = [(4, 6), (2, 3)]
    attn = MultiScaleDeformableAttention(embed_dims=embed, num_heads=heads, num_levels=levels,
                                         num_points=points, batch_first=True).eval()
    with torch.no_grad():  # random layers: offsets reach outside the maps, weights differ
        for param in attn.parameters():
            param.normal_(0, 0.5)
    spatial_shapes = torch.tensor(shapes)
    level_start_index = torch.tensor([0, shapes[0][0] * shapes[0][1]])
    num_value = sum(h * w for h, w in shapes)
    query = torch.randn(bs, num_query, embed)
    value = torch.randn(bs, num_value, embed)
    reference_points = torch.rand(bs, num_query, levels, 2)

    with torch.no_grad():
        out = attn(query, value=value, reference_points=reference_points,
                   spatial_shapes=spatial_shapes, level_start_index=level_start_index)

        v = attn.value_proj(value).view(bs, num_value, heads, embed // heads)
        offsets = attn.sampling_offsets(query).view(bs, num_query, heads, levels, points, 2)
        weights = attn.attention_weights(query).view(bs, num_query, heads, levels * points)
        weights = weights.softmax(-1).view(bs, num_query, heads, levels, points)
        normaliser = torch.tensor([[w, h] for h, w in shapes], dtype=torch.float32)
        locations = reference_points[:, :, None, :, None, :] \
            + offsets / normaliser[None, None, None, :, None, :]
        sampled = multi_scale_deformable_attn_pytorch(v, spatial_shapes, locations, weights)
        naive = naive_msda(v, shapes, locations, weights)
        expected = attn.output_proj(naive) + query

    assert out.shape == (bs, num_query, embed)
    assert (locations < 0).any() or (locations > 1).any()  # the zero padding is exercised
    torch.testing.assert_close(sampled, naive, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


# --- 4. Exact lr-decay groups of the shipped optimiser settings -------------------------------

def test_mask2former_ade20k_lr_decay_groups():
    """mask2former_cnxv2_t_ade20k.py with TINY_ARCH: AdamW lr 1e-4, wd 0.05; stage_wise decay
    0.9 with num_layers 6, so scale = 0.9 ** (6 + 1 - layer_id) with stage_wise ids:
    downsample layers 0, stage i -> i + 1, output norms 7; then x the custom keys
    ('backbone' lr 0.1 / decay 1.0; 'query_embed' / 'query_feat' / 'level_embed' decay 0), in
    'multiply' mode on top of the rules (norms, GRN, biases: no weight decay)."""
    cfg = load('mask2former_cnxv2_t_ade20k.py')
    cfg.model.decode_head.in_channels = tiny_backbone(cfg)
    lr, wd, bb = 1e-4, 0.05, 0.1
    expected = {
        # stem conv (downsample_layers.0, id 0): 0.9 ** 7
        'backbone.downsample_layers.0.0.weight': (lr * bb * 0.9 ** 7, wd),
        'backbone.downsample_layers.0.1.weight': (lr * bb * 0.9 ** 7, 0.),  # its LayerNorm
        'backbone.downsample_layers.2.1.weight': (lr * bb * 0.9 ** 7, wd),  # stage_wise: id 0
        'backbone.stages.0.0.dwconv.weight': (lr * bb * 0.9 ** 6, wd),  # depthwise: decayed
        # stage 2 (id 3): 0.9 ** 4
        'backbone.stages.2.1.pwconv1.weight': (lr * bb * 0.9 ** 4, wd),
        'backbone.stages.2.1.pwconv1.bias': (lr * bb * 0.9 ** 4, 0.),
        'backbone.stages.2.1.grn.gamma': (lr * bb * 0.9 ** 4, 0.),
        'backbone.stages.2.1.norm.weight': (lr * bb * 0.9 ** 4, 0.),
        'backbone.stages.3.0.pwconv2.weight': (lr * bb * 0.9 ** 3, wd),  # stage 3: id 4
        'backbone.norm3.weight': (lr * bb, 0.),  # output norm: id 7, still x0.1
        'decode_head.query_embed.weight': (lr, 0.),
        'decode_head.query_feat.weight': (lr, 0.),
        'decode_head.level_embed.weight': (lr, 0.),
        'decode_head.cls_embed.weight': (lr, wd),  # head linear
        'decode_head.cls_embed.bias': (lr, 0.),
        'decode_head.transformer_decoder.post_norm.weight': (lr, 0.),
    }
    assert_groups(cfg, expected)


def test_dino_lr_decay_groups():
    """dino_cnxv2_t_coco.py with TINY_ARCH (depths 1,1,2,1, stages 1-3 out): AdamW lr 1e-4, wd
    1e-4; layer_wise decay 0.95 with num_layers 6, so scale = 0.95 ** (6 + 1 - layer_id) with
    ids stem 0, stage 0 1, stage 1 2, stage 2 block j 3 + j // 3, stage 3 6, output norms 7;
    x the recipe's 'backbone' lr 0.1 (decay_mult 1). DINO's recipe keeps weight decay on its
    query / level embeddings (2-D weights)."""
    cfg = load('dino_cnxv2_t_coco.py')
    cfg.model.neck.in_channels = tiny_backbone(cfg)
    lr, wd, bb = 1e-4, 1e-4, 0.1
    expected = {
        'backbone.downsample_layers.0.0.weight': (lr * bb * 0.95 ** 7, wd),  # stem, id 0
        'backbone.downsample_layers.0.0.bias': (lr * bb * 0.95 ** 7, 0.),
        'backbone.stages.0.0.pwconv1.weight': (lr * bb * 0.95 ** 6, wd),  # id 1
        'backbone.downsample_layers.2.1.weight': (lr * bb * 0.95 ** 4, wd),  # id 3
        'backbone.stages.2.1.pwconv2.weight': (lr * bb * 0.95 ** 4, wd),  # stage 2: id 3
        'backbone.stages.2.1.grn.gamma': (lr * bb * 0.95 ** 4, 0.),
        'backbone.stages.2.1.grn.beta': (lr * bb * 0.95 ** 4, 0.),
        'backbone.stages.3.0.dwconv.weight': (lr * bb * 0.95, wd),  # stage 3: id 6
        'backbone.norm1.weight': (lr * bb, 0.),  # output norm: id 7
        'backbone.norm3.bias': (lr * bb, 0.),
        'query_embedding.weight': (lr, wd),
        'level_embed': (lr, wd),
        'bbox_head.cls_branches.0.weight': (lr, wd),  # head linear
        'bbox_head.cls_branches.0.bias': (lr, 0.),
        'neck.convs.0.gn.weight': (lr, 0.),
        'memory_trans_norm.weight': (lr, 0.),
    }
    assert_groups(cfg, expected)


def test_mask2former_coco_panoptic_lr_decay_groups():
    """mask2former_cnxv2_t_coco_panoptic.py with TINY_ARCH: AdamW lr 1e-4, wd 0.05;
    layer_wise decay 0.95 with num_layers 6 (the ids of test_dino_lr_decay_groups), x mmdet's
    'backbone' lr 0.1 / decay 1.0 and its 'query_embed' / 'query_feat' / 'level_embed' without
    weight decay, in 'multiply' mode (norms, GRN, biases: no weight decay). The instance config
    has the same settings (its own test would repeat this one)."""
    cfg = load('mask2former_cnxv2_t_coco_panoptic.py')
    cfg.model.panoptic_head.in_channels = tiny_backbone(cfg)
    lr, wd, bb = 1e-4, 0.05, 0.1
    expected = {
        'backbone.downsample_layers.0.0.weight': (lr * bb * 0.95 ** 7, wd),  # stem, id 0
        'backbone.downsample_layers.0.1.weight': (lr * bb * 0.95 ** 7, 0.),  # its LayerNorm
        'backbone.stages.0.0.pwconv1.weight': (lr * bb * 0.95 ** 6, wd),  # id 1
        'backbone.downsample_layers.1.1.weight': (lr * bb * 0.95 ** 5, wd),  # id 2
        'backbone.stages.2.1.grn.gamma': (lr * bb * 0.95 ** 4, 0.),  # id 3
        'backbone.stages.2.1.pwconv2.bias': (lr * bb * 0.95 ** 4, 0.),
        'backbone.stages.3.0.dwconv.weight': (lr * bb * 0.95, wd),  # id 6
        'backbone.norm0.weight': (lr * bb, 0.),  # output norm: id 7
        'panoptic_head.query_embed.weight': (lr, 0.),
        'panoptic_head.query_feat.weight': (lr, 0.),
        'panoptic_head.level_embed.weight': (lr, 0.),
        'panoptic_head.cls_embed.weight': (lr, wd),
        'panoptic_head.cls_embed.bias': (lr, 0.),
    }
    assert_groups(cfg, expected)
    instance = load('mask2former_cnxv2_t_coco_instance.py')
    assert instance.optim_wrapper == cfg.optim_wrapper


# Every shipped config at its real arch, every parameter: (base lr, base wd, decay_type,
# decay_rate, num_layers, custom keys as (lr_mult, decay_mult)), written from each header's
# statement of its recipe, not read from the config. Mask2Former's bases keep its queries and
# level embeddings out of weight decay; DINO's base does not.
BACKBONE_X01 = {'backbone': (0.1, 1.0)}
M2F_KEYS = dict(BACKBONE_X01, query_embed=(1.0, 0.), query_feat=(1.0, 0.), level_embed=(1.0, 0.))
RECIPES = {
    'mask2former_cnxv2_t_ade20k.py': (1e-4, 0.05, 'stage_wise', 0.9, 6, M2F_KEYS),
    'mask2former_cnxv2_b_ade20k.py': (1e-4, 0.05, 'stage_wise', 0.9, 12, M2F_KEYS),
    'mask2former_cnxv2_l_ade20k.py': (1e-4, 0.05, 'stage_wise', 0.9, 12, M2F_KEYS),
    'mask2former_cnxv2_t_coco_panoptic.py': (1e-4, 0.05, 'layer_wise', 0.95, 6, M2F_KEYS),
    'mask2former_cnxv2_b_coco_panoptic.py': (1e-4, 0.05, 'layer_wise', 0.95, 12, M2F_KEYS),
    'mask2former_cnxv2_t_coco_instance.py': (1e-4, 0.05, 'layer_wise', 0.95, 6, M2F_KEYS),
    'mask2former_cnxv2_demo_shapes.py':  # from scratch: no decay, backbone at the full lr
        (1e-3, 0.05, 'stage_wise', 1.0, 6, dict(M2F_KEYS, backbone=(1.0, 1.0))),
    'dino_cnxv2_t_coco.py': (1e-4, 1e-4, 'layer_wise', 0.95, 6, BACKBONE_X01),
    'dino_cnxv2_t_36e_coco.py': (1e-4, 1e-4, 'layer_wise', 0.95, 6, BACKBONE_X01),
    'dino_cnxv2_b_coco.py': (1e-4, 1e-4, 'layer_wise', 0.95, 12, BACKBONE_X01),
    'dino_cnxv2_b_36e_coco.py': (1e-4, 1e-4, 'layer_wise', 0.95, 12, BACKBONE_X01),
    'dino_cnxv2_l_coco.py': (1e-4, 1e-4, 'layer_wise', 0.9, 12, BACKBONE_X01),
    'dino_cnxv2_l_36e_coco.py': (1e-4, 1e-4, 'layer_wise', 0.9, 12, BACKBONE_X01),
    'dino_cnxv2_demo_shapes.py': (5e-4, 1e-4, 'layer_wise', 1.0, 6, {'backbone': (1.0, 1.0)}),
}


def governing_key(name: str, keys: Dict[str, Tuple[float, float]]):
    """mmengine's custom-key choice: the longest key contained in the name (ties:
    alphabetical), or None."""
    for key in sorted(sorted(keys), key=len, reverse=True):
        if key in name:
            return key
    return None


def test_every_shipped_config_has_a_stated_recipe():
    assert set(RECIPES) == set(SHIPPED)


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_every_parameter_of_the_full_size_model_gets_the_v1_rule_times_the_custom_keys(name):
    """The real arch (T / B / L, depth-27 third stages included), all parameters: lr = base lr x
    the ConvNeXt V1 rule's scale (conftest, restated from the V1 repository) x the governing
    custom key's lr_mult; weight decay = 0 for 1-D parameters, biases and GRN, else base wd x
    its decay_mult. A config that lost a key, a num_layers or a decay rate fails here."""
    lr, wd, decay_type, rate, num_layers, keys = RECIPES[name]
    cfg = load(name)
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    table = per_param(build_optim_wrapper(model, cfg.optim_wrapper).optimizer.param_groups)
    params = dict(model.named_parameters())
    assert set(table) == {n for n, p in params.items() if p.requires_grad}
    depth = max(model.backbone.depths)
    assert depth <= 3 * (num_layers - 3)  # the V1 rule's ids stay below the last stage's
    wrong = []
    for pname, param in params.items():
        key = governing_key(pname, keys)
        lr_mult, decay_mult = keys[key] if key else (1.0, 1.0)
        scale = v1_lr_scale(pname, decay_type, num_layers, rate) if pname.startswith(
            'backbone.') else 1.0
        no_decay = v1_weight_decay(pname, param, wd) == 0. or '.grn.' in pname
        want = (lr * scale * lr_mult, 0. if no_decay else wd * decay_mult)
        got = table[pname]
        if got[0] != pytest.approx(want[0], rel=1e-9) or got[1] != pytest.approx(want[1],
                                                                                 abs=1e-12):
            wrong.append(f'{pname}: got {got}, want {want}')
    assert not wrong, '\n'.join(wrong[:20])
    # The rule reached the deepest ids: the stem trains at rate ** (num_layers + 1).
    stem = table['backbone.downsample_layers.0.0.weight'][0]
    assert stem == pytest.approx(lr * keys['backbone'][0] * rate ** (num_layers + 1), rel=1e-9)


# --- 5. The recipes are the toolboxes' own, and so are the numbers the headers quote ------------

# config -> the toolbox config it says it keeps whole (read from the installed package).
RECIPE_OF = {
    'mask2former_cnxv2_t_ade20k.py': 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    'mask2former_cnxv2_b_ade20k.py': 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    'mask2former_cnxv2_l_ade20k.py':
        'mmseg::mask2former/mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640.py',
    'mask2former_cnxv2_t_coco_panoptic.py':
        'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py',
    'mask2former_cnxv2_b_coco_panoptic.py':
        'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py',
    'mask2former_cnxv2_t_coco_instance.py': 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
    'dino_cnxv2_t_coco.py': 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    'dino_cnxv2_b_coco.py': 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    'dino_cnxv2_t_36e_coco.py': 'mmdet::dino/dino-4scale_r50_8xb2-36e_coco.py',
    'dino_cnxv2_b_36e_coco.py': 'mmdet::dino/dino-4scale_r50_8xb2-36e_coco.py',
    'dino_cnxv2_l_coco.py': 'mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py',
    'dino_cnxv2_l_36e_coco.py': 'mmdet::dino/dino-5scale_swin-l_8xb2-36e_coco.py',
}
# What "kept whole" means: the schedule, the optimiser, the data and the head are the base's.
KEPT = ('train_cfg', 'param_scheduler', 'optim_wrapper.optimizer', 'optim_wrapper.clip_grad',
        'train_dataloader', 'val_dataloader', 'val_evaluator', 'auto_scale_lr')


def _plain(value):
    """Dicts and lists without the ``_scope_`` keys mmengine.hub.get_config adds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _get(cfg: Config, dotted: str):
    value = cfg
    for key in dotted.split('.'):
        value = value.get(key) if value is not None else None
    return _plain(value)


def _head_without_inputs(model: dict) -> dict:
    """The model dict without the backbone and the channels it hands on."""
    model = {k: v for k, v in model.items() if k not in ('backbone', 'data_preprocessor')}
    for key in ('neck', 'decode_head', 'panoptic_head'):
        if key in model:
            model[key] = {k: v for k, v in model[key].items() if k != 'in_channels'}
    return model


@pytest.mark.parametrize('name', sorted(RECIPE_OF))
def test_config_keeps_its_toolbox_recipe_whole(name):
    from mmengine.hub import get_config
    base = get_config(RECIPE_OF[name])
    cfg = load(name)
    for key in KEPT:
        assert _get(cfg, key) == _get(base, key), f'{name}: {key} differs from {RECIPE_OF[name]}'
    assert _head_without_inputs(_plain(cfg.model.to_dict())) == \
        _head_without_inputs(_plain(base.model.to_dict()))


# config -> (installed metafile, model name in it, metric, the value the header quotes).
PUBLISHED = {
    'mask2former_cnxv2_t_ade20k.py': ('mmseg', 'mask2former/metafile.yaml',
                                      'mask2former_swin-t_8xb2-160k_ade20k-512x512', 'mIoU',
                                      '48.66'),
    'mask2former_cnxv2_b_ade20k.py': ('mmseg', 'mask2former/metafile.yaml',
                                      'mask2former_swin-b-in1k-384x384-pre_8xb2-160k_ade20k-640x640',
                                      'mIoU', '52.44'),
    'mask2former_cnxv2_l_ade20k.py': ('mmseg', 'mask2former/metafile.yaml',
                                      'mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-640x640',
                                      'mIoU', '56.01'),
    'mask2former_cnxv2_t_coco_panoptic.py': ('mmdet', 'mask2former/metafile.yml',
                                             'mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic',
                                             'PQ', '53.4'),
    'mask2former_cnxv2_t_coco_instance.py': ('mmdet', 'mask2former/metafile.yml',
                                             'mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco',
                                             'mask AP', '44.7'),
    'dino_cnxv2_t_coco.py': ('mmdet', 'dino/metafile.yml', 'dino-4scale_r50_8xb2-12e_coco',
                             'box AP', '49.0'),
    'dino_cnxv2_l_coco.py': ('mmdet', 'dino/metafile.yml', 'dino-5scale_swin-l_8xb2-12e_coco',
                             'box AP', '57.2'),
}


def metafile_metrics(package: str, metafile: str, model_name: str) -> Dict[str, float]:
    import yaml
    module = importlib.import_module(package)
    path = os.path.join(os.path.dirname(module.__file__), '.mim', 'configs', metafile)
    with open(path) as file:
        models = yaml.safe_load(file)['Models']
    entry = next(m for m in models if m['Name'] == model_name)
    metrics = {}
    results = entry['Results']  # mmseg writes one dict, mmdet a list of them
    for result in results if isinstance(results, list) else [results]:
        metrics.update(result['Metrics'])
    return metrics


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_the_quoted_number_is_the_installed_metafiles(name):
    package, metafile, model_name, metric, value = PUBLISHED[name]
    assert float(metafile_metrics(package, metafile, model_name)[metric]) == float(value)
    with open(os.path.join(ROOT, 'configs', name)) as file:
        header = ''.join(line for line in file if line.startswith('#'))
    assert value in header, f'{name} does not quote {value} ({model_name}, {metric})'


def test_custom_key_matching_no_parameter_is_an_error():
    """A custom key written for another backbone (the Swin-L base's
    'relative_position_bias_table') fails, naming the key, instead of doing nothing."""
    cfg = load('mask2former_cnxv2_t_ade20k.py')
    cfg.model.decode_head.in_channels = tiny_backbone(cfg)
    cfg.optim_wrapper.paramwise_cfg.custom_keys['relative_position_bias_table'] = dict(
        lr_mult=0.1, decay_mult=0.)
    model = build_model(cfg)
    with pytest.raises(ValueError, match='relative_position_bias_table'):
        build_optim_wrapper(model, cfg.optim_wrapper)
