"""ONNX export of Mask R-CNN and Cascade Mask R-CNN against mmdet's own ``predict``.

The reference is mmdet 3.3's model, run as mmdet runs it (its data preprocessor, then
``predict(rescale=True)``: mmdet's NMS, RoIAlign and mask pasting from mmcv). The exported graph
runs in ONNX Runtime; its boxes are rescaled and its masks pasted by the numpy post-processing.
Criteria (issue 28): the same number of detections, each matched to mmdet's with box IoU > 0.99,
the same label, score within 1e-3, mask IoU > 0.98.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from cnxv2_dense.datasets import SceneSpec, write_coco_shapes
from cnxv2_dense.deploy import ExportOptions, export_model
from cnxv2_dense.deploy.detector_postprocess import paste_masks, rescale_detections
from cnxv2_dense.deploy.model_loading import build_model
from cnxv2_dense.deploy.parity import compare_detections

from .conftest import ROOT, TINY_ARCH, trained_like_checkpoint

ort = pytest.importorskip('onnxruntime', reason='the [deploy] extra is in the test environment')

CONFIGS = Path(ROOT) / 'configs'
TINY = f"dict(_delete_=True, depths={TINY_ARCH['depths']}, dims={TINY_ARCH['dims']})"
BN = "dict(type='BN', requires_grad=True)"


def tiny_config(folder: Path, family: str) -> Path:
    """The demo Mask R-CNN, or the V2-T Cascade Mask R-CNN, with a tiny backbone."""
    config = folder / f'tiny_{family}.py'
    if family == 'mask_rcnn':
        body = f"""_base_ = [{str(CONFIGS / 'mask_rcnn_cnxv2_demo_shapes.py')!r}]
model = dict(backbone=dict(arch={TINY}), neck=dict(in_channels={TINY_ARCH['dims']}))
"""
    else:  # the three box heads differ (target stds): change each one in place
        cfg = Config.fromfile(str(CONFIGS / 'cascade_mask_rcnn_cnxv2_t_coco.py'))
        cfg.model.backbone.update(arch=dict(TINY_ARCH), init_cfg=None)
        cfg.model.neck.update(in_channels=TINY_ARCH['dims'], out_channels=32)
        cfg.model.rpn_head.update(in_channels=32, feat_channels=32)
        roi = cfg.model.roi_head
        for extractor in roi.bbox_roi_extractor, roi.mask_roi_extractor:
            (extractor if isinstance(extractor, dict) else extractor[0]).out_channels = 32
        for head in roi.bbox_head:
            head.update(in_channels=32, fc_out_channels=64, conv_out_channels=32,
                        norm_cfg=dict(type='BN', requires_grad=True), num_classes=3)
        roi.mask_head.update(in_channels=32, conv_out_channels=32, num_classes=3)
        cfg.model.test_cfg.rpn.update(nms_pre=300, max_per_img=200)
        cfg.model.test_cfg.rcnn.update(max_per_img=40)
        cfg.dump(str(config))
        return config
    config.write_text(body)
    return config


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp('det_images')
    write_coco_shapes(root, num_train=1, num_val=3, spec=SceneSpec(image_size=96), seed=2)
    return sorted((root / 'val').glob('*.png'))


def mmdet_predictions(model, image: np.ndarray) -> dict:
    """mmdet's own path: its preprocessor (BGR -> RGB, normalise, pad), predict(rescale=True)."""
    from mmdet.structures import DetDataSample
    h, w = image.shape[:2]
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0)))
    bgr = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
    data = model.data_preprocessor(dict(inputs=[bgr], data_samples=[sample]), False)
    with torch.no_grad():
        result = model.predict(data['inputs'], data['data_samples'], rescale=True)[0]
    pred = result.pred_instances
    return dict(boxes=pred.bboxes.numpy(), scores=pred.scores.numpy(),
                labels=pred.labels.numpy(), masks=pred.masks.numpy().astype(bool))


def onnx_predictions(session, image: np.ndarray, mask_threshold: float = 0.5) -> dict:
    pixels = image.transpose(2, 0, 1)[None].astype(np.float32)  # RGB
    boxes, scores, labels, masks = session.run(None, {'pixels': pixels})
    boxes = rescale_detections(boxes, (1.0, 1.0))
    return dict(boxes=boxes, scores=scores, labels=labels,
                masks=paste_masks(masks, boxes, *image.shape[:2], mask_threshold))


def spread_scores(checkpoint: Path, factor: float = 0.1) -> Path:
    """Random weights saturate the box classifiers: many scores lie within 1e-6 of 1, and which
    of such tied boxes NMS keeps and the top-k cut takes is arbitrary, in mmdet as in ONNX
    Runtime (seen: the same 30 detections but for the last one or two). Scaling the classifiers'
    weights spreads the scores, so that their order, and with it the comparison, is defined."""
    saved = torch.load(checkpoint, weights_only=True)
    for key, value in saved['state_dict'].items():
        if 'fc_cls' in key:
            value.mul_(factor)
    torch.save(saved, checkpoint)
    return checkpoint


@pytest.mark.slow
@pytest.mark.parametrize('family', ['mask_rcnn', 'cascade_mask_rcnn'])
def test_exported_detector_detects_what_mmdet_detects(family, images, tmp_path):
    config = tiny_config(tmp_path, family)
    checkpoint = spread_scores(trained_like_checkpoint(config, tmp_path / 'model.pth'))
    result = export_model(str(config), str(checkpoint), str(tmp_path / 'onnx'),
                          ExportOptions(dynamic=True))
    model = build_model(Config.fromfile(str(config)))
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    session = ort.InferenceSession(str(result.onnx_file), providers=['CPUExecutionProvider'])
    counts = []
    for path in images:
        image = np.asarray(Image.open(path).convert('RGB'))
        # a second size through the same (dynamic) graph: cropped to 96 x 64, padded inside
        for crop in (image, image[:, :64]):
            reference = mmdet_predictions(model, crop)
            ours = onnx_predictions(session, crop)
            parity = compare_detections(reference, ours)
            assert parity.ok, (path.name, crop.shape, parity.failures)
            assert parity.slivers < max(parity.count_ref, 1)  # masks were compared
            counts.append(parity.count_ref)
    assert sum(counts) > 0, 'the heads detected nothing: the comparison would be empty'
    assert len(set(np.round(reference['scores'], 4))) > 1, 'scores still saturated'


@pytest.mark.slow
def test_detector_with_no_detections_exports_and_returns_empty(images, tmp_path):
    config = tiny_config(tmp_path, 'mask_rcnn')
    (tmp_path / 'strict.py').write_text(
        f"_base_ = [{str(config)!r}]\nmodel = dict(test_cfg=dict(rcnn=dict(score_thr=1.01)))\n")
    checkpoint = trained_like_checkpoint(config, tmp_path / 'model.pth')
    result = export_model(str(tmp_path / "strict.py"), str(checkpoint), str(tmp_path / "onnx"),
                          ExportOptions(shape=(96, 96)))
    session = ort.InferenceSession(str(result.onnx_file), providers=['CPUExecutionProvider'])
    image = np.asarray(Image.open(images[0]).convert('RGB'))
    boxes, scores, labels, masks = session.run(
        None, {'pixels': image.transpose(2, 0, 1)[None].astype(np.float32)})
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)
    assert masks.shape[0] == 0


def test_a_detector_with_a_static_batch_is_refused_naming_the_backbone_route(tmp_path):
    config = tiny_config(tmp_path, 'mask_rcnn')
    checkpoint = trained_like_checkpoint(config, tmp_path / 'model.pth')
    with pytest.raises(SystemExit, match='one image per call') as err:
        export_model(str(config), str(checkpoint), str(tmp_path / 'out'),
                     ExportOptions(batch=4))
    assert '--backbone-only --batch N' in str(err.value)
    assert not (tmp_path / 'out').exists() or not any((tmp_path / 'out').iterdir())


def test_paste_masks_equals_mmdet_paste():
    """The numpy paste = mmdet's ``_do_paste_mask`` (grid_sample, align_corners=False)."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 1, 28, 28, generator=gen)
    boxes = torch.tensor([[3.2, 4.7, 40.1, 30.9], [0., 0., 64., 48.], [10.5, 12.5, 11.2, 13.9],
                          [-5., -3., 20., 70.], [50.3, 2.2, 63.9, 47.1]])
    reference, _ = _do_paste_mask(masks, boxes, 48, 64, skip_empty=False)
    ours = paste_masks(masks[:, 0].numpy(), boxes.numpy(), 48, 64, threshold=0.5)
    assert ours.shape == (5, 48, 64)
    assert ((reference >= 0.5).numpy() == ours).mean() > 0.999


def test_detection_comparison_fails_what_differs_and_skips_only_sliver_masks():
    """compare_detections on hand-made cases: equal sets pass; a moved box, a changed score, a
    changed mask, a missing detection fail; a sliver's mask (box under 1 px wide) is not
    compared, a full box's is."""
    masks = np.zeros((2, 20, 20), bool)
    masks[0, 2:10, 2:10] = True
    masks[1, :, 5] = True
    ref = dict(boxes=np.array([[2., 2., 10., 10.], [5., 0., 5.6, 20.]]),
               scores=np.array([0.9, 0.5]), labels=np.array([0, 1]), masks=masks)

    def changed(**kw):
        return {**{k: v.copy() for k, v in ref.items()}, **kw}
    assert compare_detections(ref, changed()).ok
    moved = changed(boxes=ref['boxes'] + np.array([[1., 0, 1, 0], [0, 0, 0, 0]]))
    assert not compare_detections(ref, moved).ok
    assert not compare_detections(ref, changed(scores=np.array([0.9, 0.51]))).ok
    assert not compare_detections(ref, changed(labels=np.array([0, 2]))).ok
    full_mask_changed = masks.copy()
    full_mask_changed[0, 2:10, 6:10] = False
    assert not compare_detections(ref, changed(masks=full_mask_changed)).ok
    sliver_mask_changed = masks.copy()
    sliver_mask_changed[1, :, 5] = False
    parity = compare_detections(ref, changed(masks=sliver_mask_changed))
    assert parity.ok and parity.slivers == 1
    fewer = {k: v[:1] for k, v in ref.items()}
    assert not compare_detections(ref, fewer).ok
