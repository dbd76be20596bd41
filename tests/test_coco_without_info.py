"""COCO annotation files without the optional ``info`` / ``licenses`` keys (as many converters
write them) are evaluated: mmdet's CocoMetric died on them at the first validation, in
pycocotools' ``loadRes``, after the training it had already spent."""
import copy
import glob
import json
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import METRICS, DefaultScope
from pycocotools.coco import COCO

from cnxv2_dense.datasets import CLASSES, SceneSpec, write_coco_shapes
from cnxv2_dense.engine import accept_coco_files_without_info

from .conftest import ROOT


@pytest.fixture
def bare_coco_file(tmp_path):
    """The val annotations of the synthetic set, with ``info`` and ``licenses`` removed."""
    ann_files = write_coco_shapes(tmp_path, num_train=1, num_val=6, spec=SceneSpec(image_size=64))
    data = json.loads(ann_files['val'].read_text())
    del data['info'], data['licenses']
    bare = tmp_path / 'bare.json'
    bare.write_text(json.dumps(data))
    return bare


def ground_truth_as_predictions(ann_file) -> list:
    """mmdet data samples whose predicted boxes are the ground-truth boxes, score 1."""
    coco = COCO(str(ann_file))
    samples = []
    for image in coco.dataset['images']:
        anns = coco.imgToAnns[image['id']]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)]
        labels = [CLASSES.index(coco.cats[a['category_id']]['name']) for a in anns]
        samples.append(dict(
            img_id=image['id'], ori_shape=(image['height'], image['width']),
            pred_instances=dict(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                scores=torch.ones(len(anns)), labels=torch.tensor(labels))))
    return samples


def evaluate(metric_type: str, ann_file) -> dict:
    with DefaultScope.overwrite_default_scope('mmdet'):
        metric = METRICS.build(dict(type=metric_type, ann_file=str(ann_file), metric='bbox'))
    metric.dataset_meta = dict(classes=CLASSES)
    samples = ground_truth_as_predictions(ann_file)
    metric.process({}, samples)
    return metric.evaluate(size=len(samples))


def test_mmdets_metric_fails_on_such_a_file(bare_coco_file):
    with pytest.raises(KeyError, match='info'):  # what this module works around
        evaluate('CocoMetric', bare_coco_file)


def test_our_metric_evaluates_it_and_leaves_the_file_alone(bare_coco_file):
    before = bare_coco_file.read_bytes()
    metrics = evaluate('cnxv2_dense.CocoMetric', bare_coco_file)
    assert metrics['coco/bbox_mAP'] == 1.0  # the ground truth scores perfectly
    assert bare_coco_file.read_bytes() == before


def as_list(evaluators) -> list:
    return list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]


def test_the_tools_swap_it_into_every_detection_config():
    swapped = 0
    for path in sorted(glob.glob(os.path.join(ROOT, 'configs', '*.py'))):
        cfg = Config.fromfile(path)
        before = {key: copy.deepcopy(cfg.get(key)) for key in ('val_evaluator', 'test_evaluator')}
        accept_coco_files_without_info(cfg)
        for key, original in before.items():
            if cfg.get('default_scope') != 'mmdet':  # segmentation and FCMAE configs keep theirs
                assert cfg.get(key) == original
                continue
            # A panoptic config lists a panoptic metric beside CocoMetric: only CocoMetric changes.
            for after, was in zip(as_list(cfg[key]), as_list(original), strict=True):
                if was['type'] in ('CocoMetric', 'mmdet.CocoMetric'):
                    assert after['type'] == 'cnxv2_dense.CocoMetric', (path, key)
                    swapped += 1
                else:
                    assert after['type'] == was['type'], (path, key)
                assert {k: v for k, v in after.items() if k != 'type'} == {
                    k: v for k, v in was.items() if k != 'type'}
    assert swapped >= 2 * 10
    listed = Config(dict(val_evaluator=[dict(type='CocoMetric', ann_file='a.json'),
                                        dict(type='DumpDetResults', out_file_path='p.pkl')]))
    accept_coco_files_without_info(listed)
    assert [e['type'] for e in listed.val_evaluator] == ['cnxv2_dense.CocoMetric',
                                                         'DumpDetResults']
