"""What the detection demo config (mmdet's CocoDataset and pipeline, as the custom-data guide
uses them) does with annotations and images users really produce; docs/bad_inputs.md states it.
"""
import json

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image

from cnxv2_dense.datasets import SceneSpec, write_coco_shapes

from .conftest import ROOT


@pytest.fixture(scope='module')
def edited_dataset(tmp_path_factory):
    """The demo's train set of 6 images: image 1 has no annotations, image 2 a zero-area box,
    image 3 a polygon of two points, image 4 is grayscale and image 5 RGBA."""
    root = tmp_path_factory.mktemp('bad_annotations')
    ann_file = write_coco_shapes(root, num_train=6, num_val=1, spec=SceneSpec(image_size=64),
                                 seed=5)['train']
    data = json.loads(ann_file.read_text())
    images = {image['id']: image for image in data['images']}
    ids = sorted(images)
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] != ids[1]]
    first = {image_id: next(a for a in data['annotations'] if a['image_id'] == image_id)
             for image_id in ids[2:4]}
    first[ids[2]]['bbox'][2] = 0
    first[ids[2]]['area'] = 0
    first[ids[3]]['segmentation'] = [[1.0, 1.0, 20.0, 20.0]]
    ann_file.write_text(json.dumps(data))
    for image_id, mode in ((ids[4], 'L'), (ids[5], 'RGBA')):
        path = root / 'train' / images[image_id]['file_name']
        Image.open(path).convert(mode).save(path)
    counts = {i: sum(a['image_id'] == i for a in data['annotations']) for i in ids}
    cfg = Config.fromfile(f'{ROOT}/configs/mask_rcnn_cnxv2_demo_shapes.py')
    cfg.train_dataloader.dataset.data_root = f'{root}/'
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
    by_id = {dataset.get_data_info(i)['img_id']: i for i in range(len(dataset))}
    return dataset, ids, counts, by_id


def test_an_image_without_annotations_is_left_out_of_training(edited_dataset):
    dataset, ids, counts, by_id = edited_dataset
    assert counts[ids[1]] == 0 and ids[1] not in by_id
    assert len(dataset) == len(ids) - 1


def test_a_zero_area_box_is_dropped_when_read(edited_dataset):
    dataset, ids, counts, by_id = edited_dataset
    instances = dataset.get_data_info(by_id[ids[2]])['instances']
    assert len(instances) == counts[ids[2]] - 1


def test_a_polygon_of_fewer_than_3_points_is_ignored(edited_dataset):
    dataset, ids, counts, by_id = edited_dataset
    sample = dataset[by_id[ids[3]]]['data_samples']
    assert len(sample.ignored_instances) == 1
    assert len(sample.gt_instances) == counts[ids[3]] - 1


@pytest.mark.parametrize('index', [4, 5], ids=['grayscale', 'rgba'])
def test_grayscale_and_rgba_images_are_read_as_3_channels(edited_dataset, index):
    dataset, ids, _, by_id = edited_dataset
    inputs = dataset[by_id[ids[index]]]['inputs']
    assert inputs.shape[0] == 3
