"""docs/custom_data_det.md, step by step, on a tiny copy of the embedded dataset: write data,
FCMAE-pretrain on its images, fine-tune the custom-data template from that checkpoint, evaluate,
and draw predictions for a folder of images. Commands run as a user runs them."""
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

PYTHON = sys.executable
TINY = '{"depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]}'


def run(args):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def test_custom_data_guide_end_to_end(tmp_path):
    data = tmp_path / 'my_dataset'
    # 1. data (the guide's suggestion for a first try)
    run([PYTHON, 'tools/make_demo_data.py', '--out', str(data), '--num-train', '8',
         '--num-val', '4', '--image-size', '64'])
    # 2. FCMAE pretraining on the unlabeled training images -> backbone.pth
    fcmae_dir = tmp_path / 'fcmae'
    run([PYTHON, 'tools/pretrain_fcmae.py', str(data / 'train'), '--arch-dict', TINY,
         '--image-size', '64', '--epochs', '1', '--batch-size', '4', '--num-workers', '0',
         '--work-dir', str(fcmae_dir)])
    backbone = fcmae_dir / 'backbone.pth'
    assert backbone.is_file()
    # 3. the user's config: the template with its marked block edited (plus CPU-size settings)
    config = tmp_path / 'my_config.py'
    config.write_text(f'''
_base_ = [{str(Path(ROOT) / 'configs' / 'mask_rcnn_cnxv2_t_custom_data.py')!r}]
data_root = {str(data) + '/'!r}
classes = ('circle', 'square', 'triangle')
train_ann, train_images = 'annotations/instances_train.json', 'train/'
val_ann, val_images = 'annotations/instances_val.json', 'val/'
pretrained = {str(backbone)!r}
metainfo = dict(classes=classes)
model = dict(
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1], dims=[8, 16, 32, 64]),
                  drop_path_rate=0.1, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[8, 16, 32, 64]),
    roi_head=dict(bbox_head=dict(num_classes=len(classes)),
                  mask_head=dict(num_classes=len(classes))))
small = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
         dict(type='Resize', scale=(64, 64), keep_ratio=True), dict(type='PackDetInputs')]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=train_ann,
                                     data_prefix=dict(img=train_images), pipeline=small))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, metainfo=metainfo, ann_file=val_ann,
                                   data_prefix=dict(img=val_images), pipeline=small))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann)
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
''')
    # 4. fine-tune (the recipe's AMP falls back to fp32 without a GPU) and evaluate
    work = tmp_path / 'my_run'
    out = run([PYTHON, 'tools/train.py', str(config), '--work-dir', str(work)])
    assert 'AMP needs a GPU' in out
    assert 'cnxv2_dense' in out and str(backbone) in out  # the load report names the file
    out = run([PYTHON, 'tools/test.py', str(config), str(work / 'epoch_1.pth')])
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    # 5. predictions drawn for a folder of images
    vis = tmp_path / 'vis'
    run([PYTHON, 'tools/infer.py', str(config), str(work / 'epoch_1.pth'), str(data / 'val'),
         '--out-dir', str(vis)])
    assert len(list(vis.glob('*.png'))) == 4
