"""The backbone inside mmdet / mmseg: registry lookups and a Mask R-CNN train / predict step."""
import pytest
import torch
from mmengine.registry import init_default_scope

from cnxv2_dense.models import ConvNeXtV2

from .conftest import TINY_ARCH, build_demo_detector


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_registry_builds_the_backbone_from_either_toolbox(scope):
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    backbone = registry.build(dict(type='cnxv2_dense.ConvNeXtV2', arch=TINY_ARCH, out_indices=(1, 3)))
    assert isinstance(backbone, ConvNeXtV2)
    assert [o.shape[1] for o in backbone(torch.randn(1, 3, 64, 64))] == [16, 64]


def test_does_not_clash_with_mmpretrain_style_names():
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    assert MODELS.get('cnxv2_dense.ConvNeXtV2') is ConvNeXtV2
    assert MODELS.get('ConvNeXtV2') is None


def test_mask_rcnn_loss_and_predict_step():
    from mmdet.testing import demo_mm_inputs
    model = build_demo_detector()
    packed = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 128), (3, 128, 96)], num_items=[3, 2],
                            num_classes=3, with_mask=True)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses
    total = sum(v if isinstance(v, torch.Tensor) else sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stages[0][0].pwconv1.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2
    pred = results[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred.masks) == len(pred.bboxes)


def test_compiled_mmcv_ops_match_torchvision():
    """mmcv 2.1.0 is compiled by tools/setup_env.sh (C++20 patch): check its ops against
    torchvision's independent implementations."""
    import torchvision
    from mmcv.ops import RoIAlign, nms
    x = torch.randn(2, 8, 32, 32)
    rois = torch.tensor([[0, 1.0, 2.0, 20.0, 25.0], [1, 5.0, 5.0, 30.0, 18.0]])
    ours = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, aligned=True)(x, rois)
    reference = torchvision.ops.roi_align(x, rois, (7, 7), spatial_scale=0.25, sampling_ratio=0,
                                          aligned=True)
    torch.testing.assert_close(ours, reference)
    # On our backbone's features too (they must reach RoIAlign in the layout it reads).
    feats = ConvNeXtV2(arch=TINY_ARCH, out_indices=(0,))(torch.randn(2, 3, 128, 128))[0]
    torch.testing.assert_close(
        RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, aligned=True)(feats, rois),
        torchvision.ops.roi_align(feats, rois, (7, 7), spatial_scale=0.25, sampling_ratio=0,
                                  aligned=True))
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5)[1].tolist() == torchvision.ops.nms(boxes, scores, 0.5).tolist()
