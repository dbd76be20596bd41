"""tools/train.py, tools/test.py, --resume, the distributed launcher and tools/infer.py, run as a
user would (subprocesses) on a tiny copy of the embedded dataset."""
import json
import shutil
import sys
from pathlib import Path

import pytest

from cnxv2_dense.datasets import SceneSpec, write_coco_shapes

from .conftest import ROOT, run_tool

PYTHON = sys.executable


@pytest.fixture(scope='module')
def tiny_detection_config(tmp_path_factory):
    """A custom-data config in the user's style: inherit the demo config, point it at data."""
    root = tmp_path_factory.mktemp('tools')
    data = root / 'data'
    write_coco_shapes(data, num_train=8, num_val=4, spec=SceneSpec(image_size=64), seed=3)
    config = root / 'tiny_mask_rcnn.py'
    config.write_text(f'''
_base_ = [{str(Path(ROOT) / 'configs' / 'mask_rcnn_cnxv2_demo_shapes.py')!r}]
data_root = {str(data) + '/'!r}
model = dict(backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])),
             neck=dict(in_channels=[8, 16, 32, 64]))
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
max_epochs = 1
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, begin=0, end=max_epochs)]
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))
''')
    return config, data


@pytest.fixture(scope='module')
def trained_work_dir(tiny_detection_config, tmp_path_factory):
    """One training run (1 epoch, with validation) shared by the tests below."""
    config, _ = tiny_detection_config
    work = tmp_path_factory.mktemp('trained') / 'work'
    run_tool([PYTHON, 'tools/train.py', str(config), '--work-dir', str(work)])
    return work


def test_train_then_test_then_resume(tiny_detection_config, trained_work_dir, tmp_path):
    config, data = tiny_detection_config
    # What train.py wrote: the checkpoint of its one epoch, and last_checkpoint naming it (what
    # --resume reads).
    assert (trained_work_dir / 'epoch_1.pth').is_file()
    written = Path((trained_work_dir / 'last_checkpoint').read_text().strip())
    assert written == trained_work_dir / 'epoch_1.pth'
    # A copy to resume in, its pointer moved to the copied checkpoint (set-up, not a check).
    work = tmp_path / 'work'
    shutil.copytree(trained_work_dir, work)
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    checkpoint = work / 'epoch_1.pth'

    out = run_tool([PYTHON, 'tools/test.py', str(config), str(checkpoint), '--work-dir',
               str(tmp_path / 'test'), '--out', str(tmp_path / 'preds.pkl')])
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    assert (tmp_path / 'preds.pkl').is_file()

    # --resume continues from epoch 1 (weights-only loading of mmengine's checkpoint objects).
    out = run_tool([PYTHON, 'tools/train.py', str(config), '--work-dir', str(work), '--resume',
               '--cfg-options', 'train_cfg.max_epochs=2'])
    assert 'resumed epoch: 1' in out
    assert (work / 'epoch_2.pth').is_file()


def test_distributed_launcher_on_cpu_with_gloo(tiny_detection_config, tmp_path):
    config, _ = tiny_detection_config
    work = tmp_path / 'dist'
    out = run_tool(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work),
               '--cfg-options', 'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
               'train_cfg.val_interval=100'])
    assert (work / 'epoch_1.pth').is_file()
    assert 'Distributed training: True' in out and 'GPU number: 2' in out


def test_infer_writes_pictures(tiny_detection_config, trained_work_dir, tmp_path):
    config, data = tiny_detection_config
    out_dir = tmp_path / 'vis'
    run_tool([PYTHON, 'tools/infer.py', str(config), str(trained_work_dir / 'epoch_1.pth'), str(data / 'val'),
         '--out-dir', str(out_dir), '--score-thr', '0.0'])
    written = sorted(out_dir.glob('*.png'))
    assert len(written) == 4
    from PIL import Image
    assert Image.open(written[0]).size == (64, 64)
