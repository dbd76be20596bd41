"""tools/make_figures.py: curves from a run's logged scalars, a clear stop for a missing run,
pictures kept under the size limit, predictions enlarged for drawing."""
import json
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement, InstanceData, PixelData
from PIL import Image

import tools.make_figures as make_figures


def write_scalars(work_dir: Path, timestamp: str, records: List[dict]) -> None:
    vis_data = work_dir / timestamp / 'vis_data'
    vis_data.mkdir(parents=True)
    (vis_data / 'scalars.json').write_text(''.join(json.dumps(r) + '\n' for r in records))


def train_record(epoch: int, step: int, loss: float) -> dict:
    # as mmengine's LoggerHook writes them for an epoch-based loop
    return {'loss': loss, 'loss_cls': loss / 2, 'epoch': epoch, 'iter': step, 'step': step}


def test_curves_put_epoch_evaluations_at_their_iteration(tmp_path):
    # 5 iterations per epoch, logged every 2 and at the end of each epoch; evaluations logged
    # with the epoch as their step, as mmengine does for an epoch-based loop.
    work = tmp_path / 'work'
    write_scalars(work, '20260101_000000', [
        train_record(1, 2, 3.0), train_record(1, 4, 2.0), train_record(1, 5, 1.8),
        {'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.2, 'step': 1},
        train_record(2, 7, 1.5), train_record(2, 9, 1.2), train_record(2, 10, 1.0),
        {'coco/bbox_mAP': 0.3, 'coco/segm_mAP': 0.4, 'step': 2},
    ])
    history = make_figures.read_history(work)
    assert [r['step'] for r in history.train] == [2, 4, 5, 7, 9, 10]
    assert [(i, r['coco/bbox_mAP']) for i, r in history.val] == [(5, 0.1), (10, 0.3)]

    out = make_figures.plot_curves(history, ('coco/bbox_mAP', 'coco/segm_mAP'), 'fake run',
                                   tmp_path / 'figs' / 'curves.png')
    with Image.open(out) as image:
        assert image.size == (1000, 340)  # figsize (10, 3.4) at 100 dpi
    assert out.stat().st_size < make_figures.MAX_KB * 1000


def test_a_resumed_run_replaces_the_history_from_where_it_resumed(tmp_path):
    work = tmp_path / 'work'
    write_scalars(work, '20260101_000000', [  # iteration-based, killed after iteration 30
        {'loss': 3.0, 'iter': 10, 'step': 10}, {'loss': 2.0, 'iter': 20, 'step': 20},
        {'mIoU': 20.0, 'step': 20}, {'loss': 1.9, 'iter': 30, 'step': 30}])
    write_scalars(work, '20260101_010000', [  # resumed from the checkpoint at iteration 20
        {'loss': 1.5, 'iter': 30, 'step': 30}, {'loss': 1.0, 'iter': 40, 'step': 40},
        {'mIoU': 40.0, 'step': 40}])
    write_scalars(work, '20260101_020000', [{'mIoU': 40.0, 'step': 0}])  # a test, no training
    history = make_figures.read_history(work)
    assert [(r['step'], r['loss']) for r in history.train] == [(10, 3.0), (20, 2.0), (30, 1.5),
                                                                (40, 1.0)]
    assert [(i, r['mIoU']) for i, r in history.val] == [(20, 20.0), (40, 40.0)]


def test_missing_runs_stop_before_drawing_and_name_the_commands(tmp_path):
    running = tmp_path / 'seg_running'  # started, no checkpoint yet
    running.mkdir()
    out_dir = tmp_path / 'figs'
    with pytest.raises(SystemExit) as stop:
        make_figures.main(['--tasks', 'det', 'seg', '--det-work-dir', str(tmp_path / 'none'),
                           '--seg-work-dir', str(running), '--out-dir', str(out_dir)])
    message = str(stop.value)
    assert f'no det demo run at {tmp_path / "none"}' in message
    assert f'`python tools/demo.py --work-dir {tmp_path / "none"}`' in message
    assert f'python tools/demo.py --task seg --work-dir {running} --resume' in message
    assert not out_dir.exists()


def test_save_png_shrinks_only_what_is_over_the_limit(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    make_figures.save_png(small, tmp_path / 'small.png', max_kb=100)
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'small.png')), small)  # lossless

    noise = rng.integers(0, 256, (600, 900, 3), dtype=np.uint8)  # ~1.6 MB as PNG
    size = make_figures.save_png(noise, tmp_path / 'noise.png', max_kb=100)
    assert size <= 100_000
    with Image.open(tmp_path / 'noise.png') as image:
        assert abs(image.width / image.height - 1.5) < 0.02  # shrunk, not cropped


def test_enlarge_scales_the_drawn_predictions_with_the_image():
    image = np.zeros((4, 6, 3), np.uint8)
    masks = torch.zeros(1, 4, 6, dtype=torch.bool)
    masks[0, 1, 2] = True
    sample = BaseDataElement(
        pred_instances=InstanceData(bboxes=torch.tensor([[2.0, 1.0, 3.0, 2.0]]), masks=masks),
        pred_sem_seg=PixelData(data=torch.arange(24).view(1, 4, 6)))
    big, sample = make_figures.enlarge(image, sample, 3)
    assert big.shape == (12, 18, 3)
    assert sample.pred_instances.bboxes.tolist() == [[6.0, 3.0, 9.0, 6.0]]
    assert torch.nonzero(sample.pred_instances.masks[0]).tolist() == [
        [r, c] for r in range(3, 6) for c in range(6, 9)]
    assert sample.pred_sem_seg.data.shape == (1, 12, 18)
    assert sample.pred_sem_seg.data[0, 11, 17] == 23  # the bottom-right pixel's class
