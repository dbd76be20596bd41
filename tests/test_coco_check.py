"""Detection data checked before training: missing files, classes that are not the file's
categories, annotations of unlisted images, missing images and heads with another number of
classes are named with their fix instead of surfacing late (or never)."""
import json

import pytest
from mmengine.config import Config
from PIL import Image

from cnxv2_dense.checks import check_coco_dataset, detection_data_problems
from cnxv2_dense.datasets import CLASSES, SceneSpec, write_coco_shapes

from .conftest import ROOT, as_jpeg

DEMO = f'{ROOT}/configs/mask_rcnn_cnxv2_demo_shapes.py'


@pytest.fixture
def coco(tmp_path):
    ann_files = write_coco_shapes(tmp_path, num_train=4, num_val=2, spec=SceneSpec(image_size=64))
    return tmp_path, ann_files['train']


def edit(ann_file, change) -> None:
    data = json.loads(ann_file.read_text())
    change(data)
    ann_file.write_text(json.dumps(data))


def check(root, ann_file, classes=CLASSES):
    return check_coco_dataset(str(ann_file), str(root / 'train'), classes,
                              'train_dataloader.dataset')


def test_the_written_demo_data_pass(coco):
    assert check(*coco) == []


def test_missing_annotation_file_and_image_folder(coco, tmp_path):
    root, ann_file = coco
    [problem] = check(root, tmp_path / 'nope.json')
    assert 'train_dataloader.dataset.ann_file' in problem and 'nope.json does not exist' in problem
    [problem] = check_coco_dataset(str(ann_file), str(tmp_path / 'images'), CLASSES, 'x')
    assert 'x.data_prefix.img' in problem and 'is not a folder' in problem


def test_classes_that_are_not_categories(coco):
    [problem] = check(*coco, classes=('circle', 'Square', 'hexagon'))
    assert "['Square', 'hexagon']" in problem and "'square'" in problem
    assert 'metainfo=dict(classes=...)' in problem


def test_annotations_of_unlisted_images_and_missing_image_files(coco):
    root, ann_file = coco
    edit(ann_file, lambda d: d['annotations'].append(dict(d['annotations'][0], id=999,
                                                          image_id=77)))
    (root / 'train' / json.loads(ann_file.read_text())['images'][1]['file_name']).unlink()
    problems = check(root, ann_file)
    assert len(problems) == 2
    assert 'image ids [77]' in problems[0]
    assert '1 of its 4 images are not in' in problems[1]


def test_unreadable_and_incomplete_files(coco):
    root, ann_file = coco
    edit(ann_file, lambda d: d.pop('categories'))
    assert 'no categories' in check(root, ann_file)[0]
    ann_file.write_text('{"images": [')
    assert 'not a readable JSON file' in check(root, ann_file)[0]


def test_config_level_check_names_heads_with_another_number_of_classes(coco):
    root, _ = coco
    cfg = Config.fromfile(DEMO)
    for key in ('train_dataloader', 'val_dataloader'):
        cfg[key].dataset.data_root = f'{root}/'
    cfg.val_evaluator.ann_file = f'{root}/annotations/instances_val.json'
    assert detection_data_problems(cfg) == []
    cfg.model.roi_head.mask_head.num_classes = 80
    [problem] = detection_data_problems(cfg)
    assert problem.startswith('model.roi_head.mask_head.num_classes is 80')
    assert '3 classes' in problem
    # A shipped COCO config pointed at a folder without COCO names the missing file.
    full = Config.fromfile(f'{ROOT}/configs/mask_rcnn_cnxv2_t_coco.py')
    for key in ('train_dataloader', 'val_dataloader'):
        full[key].dataset.data_root = f'{root}/nothing/'
    problems = detection_data_problems(full)
    assert 'instances_train2017.json does not exist' in problems[0]
    assert problems[1].startswith('val_dataloader.dataset.ann_file')
    # the metric's own copy of the path (data_root is not joined to it)
    assert problems[2] == ('val_evaluator.ann_file: data/coco/annotations/instances_val2017.json '
                           'does not exist; set it to the annotation file of the images it '
                           'scores')
    assert len(problems) == 3


def test_empty_foreign_truncated_and_resized_images_are_named(coco):
    root, ann_file = coco
    names = [image['file_name'] for image in json.loads(ann_file.read_text())['images']]
    (root / 'train' / names[0]).write_bytes(b'')
    (root / 'train' / names[1]).write_text('<html>404 not found</html>')
    png = (root / 'train' / names[2]).read_bytes()
    (root / 'train' / names[2]).write_bytes(png[:len(png) // 2])
    Image.open(root / 'train' / names[3]).resize((32, 64)).save(root / 'train' / names[3])
    problems = check(root, ann_file)
    assert len(problems) == 4
    for name, problem in zip(names, problems):
        assert problem.startswith(str(root / 'train' / name))
    assert all('not a readable image' in p for p in problems[:3])
    assert '32x64 pixels, but the annotation file records 64x64' in problems[3]


def test_grayscale_and_rgba_images_pass(coco):
    root, ann_file = coco
    names = [image['file_name'] for image in json.loads(ann_file.read_text())['images']]
    for name, mode in zip(names, ('L', 'RGBA')):
        Image.open(root / 'train' / name).convert(mode).save(root / 'train' / name)
    assert check(root, ann_file) == []



def test_a_truncated_jpeg_is_named(coco):
    """A JPEG cut short opens and reports its size (PIL's verify() passes it); the check decodes
    it and names it, with the annotation file to fix. Whole JPEGs, grayscale ones and ones with
    bytes after the image (as some cameras write them) pass."""
    root, ann_file = coco
    images = json.loads(ann_file.read_text())['images']
    kinds = [dict(truncate=True), dict(), dict(trailer=b'camera trailer'), dict(mode='L')]
    for image, kind in zip(images, kinds):
        png = root / 'train' / image['file_name']
        image['file_name'] = png.with_suffix('.jpg').name
        as_jpeg(png, png.with_suffix('.jpg'), **kind)
    edit(ann_file, lambda data: data.update(images=images))
    with Image.open(root / 'train' / images[0]['file_name']) as truncated:
        truncated.verify()  # what a header check sees: nothing wrong
    [problem] = check(root, ann_file)
    assert problem.startswith(f'{root / "train" / images[0]["file_name"]}: a truncated JPEG')
    assert 'image file is truncated' in problem  # PIL's reason
    assert problem.endswith(f'remove the image and its annotations from {ann_file}')


def test_a_test_set_image_list_without_annotations_passes_only_for_testing(coco):
    """COCO's test-dev ships an image list without annotations (scored by the server:
    format_only); tools/test.py accepts such a file, training does not."""
    root, ann_file = coco
    edit(ann_file, lambda data: data.pop('annotations'))
    assert check_coco_dataset(str(ann_file), str(root / 'train'), CLASSES,
                              'test_dataloader.dataset', needs_annotations=False) == []
    [problem] = check(root, ann_file)
    assert problem == f'{ann_file}: no annotations: a COCO instance file has images, ' \
        'annotations and categories'
    cfg = Config.fromfile(DEMO)
    cfg.test_dataloader.dataset.update(data_root=f'{root}/', ann_file=str(ann_file),
                                       data_prefix=dict(img='train/'))
    cfg.test_evaluator.update(ann_file=str(ann_file), format_only=True, outfile_prefix='x')
    assert detection_data_problems(cfg, ('test_dataloader',)) == []
