import hashlib

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cnxv2_dense.datasets import (CLASSES, SceneSpec, layout_files, write_ade_shapes,
                                  write_coco_shapes)


def _digest(root):
    files = sorted(p for p in root.rglob('*') if p.is_file())
    return hashlib.sha256(b''.join(p.read_bytes() for p in files)).hexdigest()


def test_coco_layout_loads_with_pycocotools_and_masks_match_boxes(tmp_path):
    ann_files = write_coco_shapes(tmp_path, num_train=6, num_val=3, spec=SceneSpec(image_size=64))
    coco = COCO(str(ann_files['train']))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == 6
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 6
    for ann in anns:
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        assert mask.sum() == ann['area'] > 0
        np.testing.assert_allclose(ann['bbox'], [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1])
        assert mask_utils.area(ann['segmentation']) == ann['area']
    image = Image.open(tmp_path / 'train' / coco.loadImgs(1)[0]['file_name'])
    assert image.size == (64, 64) and image.mode == 'RGB'
    assert len(COCO(str(ann_files['val'])).getImgIds()) == 3


def test_ground_truth_as_predictions_scores_perfect_map(tmp_path):
    from pycocotools.cocoeval import COCOeval
    ann_files = write_coco_shapes(tmp_path, num_train=1, num_val=8, spec=SceneSpec(image_size=64))
    coco = COCO(str(ann_files['val']))
    detections = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'],
                       segmentation=a['segmentation'], score=1.0) for a in coco.dataset['annotations']]
    for iou_type in ('bbox', 'segm'):
        evaluator = COCOeval(coco, coco.loadRes(detections), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert evaluator.stats[0] == 1.0


def test_instances_do_not_overlap_and_classes_vary(tmp_path):
    ann_files = write_coco_shapes(tmp_path, num_train=20, num_val=1, spec=SceneSpec(image_size=64))
    coco = COCO(str(ann_files['train']))
    labels = set()
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        masks = np.stack([coco.annToMask(a) for a in anns]) if anns else np.zeros((0, 64, 64))
        assert masks.sum(0).max() <= 1, 'visible masks must be disjoint'
        labels.update(a['category_id'] for a in anns)
    assert labels == {1, 2, 3}


def test_generator_is_deterministic(tmp_path):
    spec = SceneSpec(image_size=48)
    write_coco_shapes(tmp_path / 'a', num_train=3, num_val=2, spec=spec, seed=7)
    write_coco_shapes(tmp_path / 'b', num_train=3, num_val=2, spec=spec, seed=7)
    write_coco_shapes(tmp_path / 'c', num_train=3, num_val=2, spec=spec, seed=8)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b') != _digest(tmp_path / 'c')


def test_ade_layout_labels(tmp_path):
    write_ade_shapes(tmp_path, num_train=4, num_val=2, spec=SceneSpec(image_size=64))
    images = sorted((tmp_path / 'images' / 'training').glob('*.png'))
    labels = sorted((tmp_path / 'annotations' / 'training').glob('*.png'))
    assert len(images) == len(labels) == 4
    assert len(list((tmp_path / 'annotations' / 'validation').glob('*.png'))) == 2
    values = set()
    for path in labels:
        label = np.asarray(Image.open(path))
        assert label.shape == (64, 64) and label.dtype == np.uint8
        values.update(np.unique(label).tolist())
    assert 0 in values and values <= {0, 1, 2, 3} and len(values) > 1


def test_val_split_does_not_depend_on_the_number_of_training_images(tmp_path):
    # docs/demo_experiments.md compares seg demo runs on 400 and 4000 training images on the
    # same val split.
    spec = SceneSpec(image_size=48)
    write_ade_shapes(tmp_path / 'few', num_train=2, num_val=3, spec=spec)
    write_ade_shapes(tmp_path / 'many', num_train=5, num_val=3, spec=spec)
    for folder in ('images/validation', 'annotations/validation'):
        assert _digest(tmp_path / 'few' / folder) == _digest(tmp_path / 'many' / folder)
    assert _digest(tmp_path / 'few' / 'images/training') != _digest(
        tmp_path / 'many' / 'images/training')


def test_make_demo_data_keeps_refuses_and_rewrites(tmp_path, capsys):
    from tools.make_demo_data import main
    root = tmp_path / 'ade'
    small = ['--layout', 'ade', '--out', str(root), '--num-val', '1', '--image-size', '32']
    main(small + ['--num-train', '3'])
    images = root / 'images' / 'training'
    assert len(list(images.glob('*.png'))) == 3
    before = _digest(root)
    # same settings: kept as it is
    main(small + ['--num-train', '3'])
    assert 'already holds' in capsys.readouterr().out and _digest(root) == before
    # other settings: refused with the differing setting and the command that rewrites it
    with pytest.raises(SystemExit) as error:
        main(small + ['--num-train', '2'])
    message = str(error.value)
    assert 'num_train=3 (asked for 2)' in message and '--num-train 2' in message
    assert '--force' in message and _digest(root) == before
    # --force: rewritten, and the third image of the old dataset does not stay behind
    main(small + ['--num-train', '2', '--force'])
    assert sorted(p.name for p in images.glob('*.png')) == ['000000.png', '000001.png']
    assert len(list((root / 'annotations' / 'training').glob('*.png'))) == 2


def test_make_demo_data_default_size_depends_on_the_layout(tmp_path):
    """The seg demo needs 4000 training images (docs/demo_experiments.md); an ADE dataset
    written with fewer, as earlier versions did, is refused with the command that rewrites it,
    not reused or replaced."""
    from tools.make_demo_data import main, parse_args
    assert parse_args([]).num_train == 400  # coco, the detection demo
    assert parse_args(['--layout', 'ade']).num_train == 4000
    root = tmp_path / 'ade'
    small = ['--layout', 'ade', '--out', str(root), '--num-val', '1', '--image-size', '32']
    main(small + ['--num-train', '3'])
    before = _digest(root)
    with pytest.raises(SystemExit) as error:
        main(small)
    assert 'num_train=3 (asked for 4000)' in str(error.value)
    assert '--num-train 4000' in str(error.value) and _digest(root) == before


def test_make_demo_data_reads_markers_of_older_versions(tmp_path):
    # Markers written before settings were checked hold the repr of the argparse namespace.
    from tools.make_demo_data import recorded_settings
    marker = tmp_path / '.complete'
    marker.write_text("{'layout': 'ade', 'out': None, 'num_train': 400, 'num_val': 100, "
                      "'image_size': 128, 'seed': 0, 'force': False}\n")
    assert recorded_settings(marker) == dict(layout='ade', num_train=400, num_val=100,
                                             image_size=128, seed=0)


@pytest.mark.parametrize('layout', ['coco', 'ade'])
def test_layout_files_lists_exactly_what_the_writer_writes(layout, tmp_path):
    writer = write_coco_shapes if layout == 'coco' else write_ade_shapes
    writer(tmp_path, num_train=3, num_val=2, spec=SceneSpec(image_size=32))
    written = sorted(p for p in tmp_path.rglob('*') if p.is_file())
    assert sorted(layout_files(tmp_path, layout, num_train=3, num_val=2)) == written
    with pytest.raises(ValueError, match="layout must be 'coco' or 'ade'"):
        layout_files(tmp_path, 'voc', 1, 1)
