"""tools/train.py, tools/test.py, --resume, the distributed launcher and tools/infer.py, run as a
user would (subprocesses) on a tiny copy of the embedded dataset."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnxv2_dense.datasets import SceneSpec, write_coco_shapes

from .conftest import (ROOT, alive, as_jpeg, assert_same_weights, cmdline, final_weights,
                       processes, run_killed_after_first_checkpoint, run_tool)

PYTHON = sys.executable


@pytest.fixture(scope='module')
def tiny_detection_config(tmp_path_factory):
    """A custom-data config in the user's style: inherit the demo config, point it at data."""
    root = tmp_path_factory.mktemp('tools')
    data = root / 'data'
    ann_files = write_coco_shapes(data, num_train=8, num_val=4, spec=SceneSpec(image_size=64),
                                  seed=3)
    # Written as many converters write COCO files: without the optional `info` / `licenses`
    # (mmdet's CocoMetric failed on them at the first validation; the tools' metric does not).
    val = json.loads(ann_files['val'].read_text())
    del val['info'], val['licenses']
    ann_files['val'].write_text(json.dumps(val))
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_two_processes_agree_with_one(tiny_detection_config, tmp_path):
    """Two processes (gloo, CPU) with half the batch each train Mask R-CNN as one process with
    the whole batch, from the same weights and data: the first iterations' losses and the
    weights after them agree to float precision. This is also the test of tools/dist_train.sh on
    a machine without GPUs: both ranks train (each records its losses), and rank 0's checkpoint
    holds the weights of the one-process run.

    mmdet normalises the RPN and RoI losses by the anchors / RoIs / positive RoIs of each
    process's own half, and DDP averages the halves' gradients: equal to the whole batch's only
    where both halves count alike (docs/runs.md). So the batch is two training images twice,
    ordered so that each process gets one copy of each; anchors and RoIs are all used (no
    random sampling) and nothing else draws at random (no flip). With both halves alike, a
    process that kept its own gradient would not show here (the segmentation test splits the
    batch into different halves); one summed over the processes instead of averaged would (SGD,
    whose step is proportional to the gradient)."""
    from .distributed import (RECORD_EACH_PROCESS, assert_two_processes_agree_with_one,
                              free_port, recorded_losses)
    config, data = tiny_detection_config
    train = json.loads((data / 'annotations' / 'instances_train.json').read_text())
    first, second = train['images'][:2]
    images, annotations = [], []
    for image in (first, first, second, second):  # process 0 gets items 0, 2; process 1 1, 3
        copy = dict(image, id=len(images) + 1)
        images.append(copy)
        annotations += [dict(ann, id=len(annotations) + i + 1, image_id=copy['id'])
                        for i, ann in enumerate(a for a in train['annotations']
                                                if a['image_id'] == image['id'])]
    doubled = tmp_path / 'doubled.json'
    doubled.write_text(json.dumps(dict(train, images=images, annotations=annotations)))
    exact = tmp_path / 'exact.py'
    exact.write_text(f"""_base_ = [{str(config)!r}]
{RECORD_EACH_PROCESS}
everything = dict(num=10**6)  # more than there are anchors / RoIs: all are used, in order
model = dict(train_cfg=dict(rpn=dict(sampler=everything), rcnn=dict(sampler=everything)))
optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=0.01))
train_pipeline = [dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                  dict(type='Resize', scale=(128, 128), keep_ratio=True),
                  dict(type='PackDetInputs')]
train_dataloader = dict(batch_size=4, sampler=dict(type='DefaultSampler', shuffle=False),
                        dataset=dict(ann_file={str(doubled)!r}, pipeline=train_pipeline))
val_cfg = None
val_dataloader = None
val_evaluator = None
train_cfg = dict(max_epochs=2)
default_hooks = dict(checkpoint=dict(interval=2))
""")
    whole, split = tmp_path / 'whole', tmp_path / 'split'
    run_tool([PYTHON, 'tools/train.py', str(exact), '--work-dir', str(whole)])
    run_tool(['bash', 'tools/dist_train.sh', str(exact), '2', '--work-dir', str(split),
              '--cfg-options', 'train_dataloader.batch_size=2'], PORT=str(free_port()))
    assert len(recorded_losses(whole, 0)) == 2  # one iteration of 4 images per epoch
    assert_two_processes_agree_with_one(whole, split, 'epoch_2.pth')


@pytest.mark.slow
def test_infer_writes_pictures(tiny_detection_config, trained_work_dir, tmp_path):
    config, data = tiny_detection_config
    out_dir = tmp_path / 'vis'
    run_tool([PYTHON, 'tools/infer.py', str(config), str(trained_work_dir / 'epoch_1.pth'), str(data / 'val'),
         '--out-dir', str(out_dir), '--score-thr', '0.0'])
    written = sorted(out_dir.glob('*.png'))
    assert [p.name for p in written] == sorted(p.name for p in (data / 'val').glob('*.png'))
    # Above --score-thr 1.01 nothing is drawn: the pictures are the images themselves. At 0.0
    # a picture differs from its image exactly where mmdet's own inference finds something.
    import numpy as np
    from mmdet.apis import inference_detector, init_detector
    from PIL import Image
    empty_dir = tmp_path / 'vis_empty'
    run_tool([PYTHON, 'tools/infer.py', str(config), str(trained_work_dir / 'epoch_1.pth'),
              str(data / 'val'), '--out-dir', str(empty_dir), '--score-thr', '1.01'])
    from cnxv2_dense.utils import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    model = init_detector(str(config), str(trained_work_dir / 'epoch_1.pth'), device='cpu')
    found = 0
    for picture in written:
        image = np.asarray(Image.open(data / 'val' / picture.name).convert('RGB'))
        drawn = np.asarray(Image.open(picture).convert('RGB'))
        undrawn = np.asarray(Image.open(empty_dir / picture.name).convert('RGB'))
        assert drawn.shape == image.shape == (64, 64, 3)
        assert np.array_equal(undrawn, image)
        detections = len(inference_detector(model, str(data / 'val' / picture.name)).pred_instances)
        assert (not np.array_equal(drawn, image)) == (detections > 0), picture.name
        found += detections
    assert found > 0, 'the model found nothing: the pictures would prove nothing'


def test_work_dir_checkpoints_are_found(tmp_path):
    from mmengine.config import Config

    from cnxv2_dense.utils import earlier_checkpoints
    cfg = Config(dict(work_dir=str(tmp_path / 'run'),
                      default_hooks=dict(checkpoint=dict(out_dir=str(tmp_path / 'ckpts')))))
    assert earlier_checkpoints(cfg) == []  # the work dir does not exist yet
    (tmp_path / 'run' / '20260101_000000').mkdir(parents=True)  # logs of a run that stopped early
    (tmp_path / 'run' / 'config.py').write_text('')
    assert earlier_checkpoints(cfg) == []
    (tmp_path / 'run' / 'last_checkpoint').write_text('x')
    (tmp_path / 'ckpts' / 'run').mkdir(parents=True)  # mmengine saves to out_dir/<work dir name>
    (tmp_path / 'ckpts' / 'run' / 'iter_8.pth').write_bytes(b'')
    (tmp_path / 'ckpts' / 'other.pth').write_bytes(b'')  # not where this run writes
    assert earlier_checkpoints(cfg) == [tmp_path / 'run' / 'last_checkpoint',
                                        tmp_path / 'ckpts' / 'run' / 'iter_8.pth']


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its content."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.mark.slow
def test_train_refuses_a_work_dir_with_checkpoints(tiny_detection_config, trained_work_dir,
                                                    tmp_path):
    from tools import train
    config, _ = tiny_detection_config
    work = tmp_path / 'work'
    shutil.copytree(trained_work_dir, work)
    before = snapshot(work)
    with pytest.raises(SystemExit) as stop:
        train.main([str(config), '--work-dir', str(work)])
    message = str(stop.value.code)
    assert 'epoch_1.pth' in message and 'last_checkpoint' in message and str(work) in message
    for way_on in ('--resume', '--work-dir NEW_DIR', '--overwrite'):
        assert way_on in message
    assert snapshot(work) == before  # stopped before the Runner wrote anything (logs included)

    # The same refusal from the command line: exit status 1, the message on stderr.
    proc = subprocess.run([PYTHON, 'tools/train.py', str(config), '--work-dir', str(work)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and '--overwrite' in proc.stderr
    assert snapshot(work) == before

    # --overwrite trains there again: a new epoch_1.pth, last_checkpoint naming it.
    out = run_tool([PYTHON, 'tools/train.py', str(config), '--work-dir', str(work), '--overwrite',
                    '--cfg-options', 'train_cfg.val_interval=100'])
    assert 'Epoch(train) [1]' in out
    assert 'AtomicCheckpointHook' in out  # the tools write checkpoints through it
    assert (work / 'epoch_1.pth').read_bytes() != before[Path('epoch_1.pth')]
    assert Path((work / 'last_checkpoint').read_text().strip()) == work / 'epoch_1.pth'


def test_pretrain_tool_refuses_a_work_dir_with_checkpoints(tmp_path):
    from tools import pretrain_fcmae
    work = tmp_path / 'fcmae'
    work.mkdir()
    (work / 'backbone.pth').write_bytes(b'earlier export')
    argv = [str(tmp_path), '--work-dir', str(work), '--num-workers', '0']
    with pytest.raises(SystemExit) as stop:
        pretrain_fcmae.main(argv)
    assert 'tools/pretrain_fcmae.py' in str(stop.value.code)
    assert 'backbone.pth' in str(stop.value.code) and '--overwrite' in str(stop.value.code)
    assert sorted(p.name for p in work.iterdir()) == ['backbone.pth']
    assert (work / 'backbone.pth').read_bytes() == b'earlier export'
    # Resuming continues the earlier run, and --overwrite is the user's choice: both pass.
    from cnxv2_dense.utils import refuse_to_overwrite
    for flags in (['--resume'], ['--overwrite']):
        args = pretrain_fcmae.parse_args(argv + flags)
        refuse_to_overwrite(pretrain_fcmae.build_pretrain_config(args), args.overwrite)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc; prctl is Linux')
def test_a_killed_run_leaves_no_dataloader_worker_behind(tiny_detection_config, tmp_path):
    """SIGKILL (the OOM killer, preemption) of the main process ends its dataloader workers
    too; they used to stay alive, orphaned and blocked, holding their memory."""
    config, _ = tiny_detection_config
    proc = subprocess.Popen(
        [PYTHON, 'tools/train.py', str(config), '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', 'train_dataloader.num_workers=1',
         'train_dataloader.persistent_workers=True', 'train_cfg.max_epochs=1000',
         'train_cfg.val_interval=1000', 'default_hooks.checkpoint.interval=1000'],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = {}
    try:
        deadline = time.monotonic() + 240
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            # dataloader workers are forks of the main process: same command line
            workers = {pid: start for pid, (ppid, _, start) in processes().items()
                       if ppid == proc.pid and cmdline(pid) == cmdline(proc.pid)}
        assert workers, f'no dataloader worker started (train.py exit status {proc.poll()})'
        time.sleep(3)  # the worker is past its init and loading batches
        assert all(alive(pid, start) for pid, start in workers.items())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # NOTE: shorter than torch's own check of the parent (every 5 s, and only while the
        # worker waits for work): what ends the workers here is the parent-death signal.
        deadline = time.monotonic() + 3
        while any(alive(pid, start) for pid, start in workers.items()):
            assert time.monotonic() < deadline, f'workers {sorted(workers)} outlived the run'
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid, start in workers.items():  # leave nothing behind if the test failed
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize('workers', [
    ['train_dataloader.num_workers=0'],
    ['train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True']],
    ids=['main-process', 'persistent-worker'])
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tiny_detection_config, tmp_path,
                                                               workers):
    """SIGKILL after the first epoch's checkpoint, then --resume: the final weights equal an
    uninterrupted run's bit for bit (same seed, one thread). RoI proposal sampling draws from the
    generators the checkpoint carries; the flip augmentation too when it runs in the main process,
    and from per-sample seeds in a worker that lives across epochs; validation after each epoch
    does not shift the training's draws."""
    config, _ = tiny_detection_config
    train = [PYTHON, 'tools/train.py', str(config)]
    two_epochs = ['--cfg-options', 'train_cfg.max_epochs=2', *workers]
    run_tool([*train, '--work-dir', str(tmp_path / 'whole'), *two_epochs], OMP_NUM_THREADS='1')

    killed = tmp_path / 'killed'
    run_killed_after_first_checkpoint(
        [*train, '--work-dir', str(killed), '--cfg-options', 'train_cfg.max_epochs=1000',
         *workers], killed)
    out = run_tool([*train, '--work-dir', str(killed), '--resume', str(killed / 'epoch_1.pth'),
                    *two_epochs], OMP_NUM_THREADS='1')
    assert 'resumed epoch: 1' in out and 'Restored the random states' in out
    assert_same_weights(final_weights(killed / 'epoch_2.pth'),
                        final_weights(tmp_path / 'whole' / 'epoch_2.pth'))


def test_demo_passes_resume_and_overwrite_to_train(monkeypatch, tmp_path):
    """tools/demo.py trains through tools/train.py; a second demo in the same work dir needs the
    same choice, so it takes --resume / --overwrite and hands them on."""
    import tools.make_demo_data as make_demo_data
    import tools.train as train
    from tools import demo
    calls = []
    monkeypatch.setattr(make_demo_data, 'main', lambda argv: None)  # data are not the point
    monkeypatch.setattr(train, 'main', calls.append)
    work = str(tmp_path / 'demo')
    for flags in ([], ['--resume'], ['--overwrite']):
        assert demo.main(['--work-dir', work, *flags]) == []  # no metrics: nothing trained
    config = str(demo.TASKS['det'].config)
    assert calls == [[config, '--work-dir', work], [config, '--work-dir', work, '--resume'],
                     [config, '--work-dir', work, '--overwrite']]
    with pytest.raises(SystemExit):  # one or the other
        demo.main(['--resume', '--overwrite'])


def test_train_checks_the_detection_data_first(tiny_detection_config, tmp_path):
    """Data that would stop or spoil training stops train.py before the Runner is built."""
    from tools import train
    config, data = tiny_detection_config
    work = tmp_path / 'work'
    with pytest.raises(SystemExit) as stop:
        train.main([str(config), '--work-dir', str(work), '--cfg-options',
                    'model.roi_head.bbox_head.num_classes=5',
                    f'val_dataloader.dataset.data_root={tmp_path}/elsewhere/'])
    message = str(stop.value.code)
    assert '2 problem(s) in the inputs of' in message and str(config) in message
    assert 'model.roi_head.bbox_head.num_classes is 5' in message
    assert f'{tmp_path}/elsewhere/annotations/instances_val.json does not exist' in message
    assert not work.exists()


def test_test_and_infer_check_their_inputs_first(tiny_detection_config, tmp_path):
    """tools/test.py checks its checkpoint and test set, tools/infer.py its checkpoint and input
    images, as train.py checks its data: each problem named, nothing built or written."""
    from tools import infer, test
    config, data = tiny_detection_config
    copy = tmp_path / 'data'
    shutil.copytree(data, copy)
    ann_file = copy / 'annotations' / 'instances_val.json'
    val = json.loads(ann_file.read_text())
    png = copy / 'val' / val['images'][1]['file_name']
    cut = png.with_suffix('.jpg')
    as_jpeg(png, cut, truncate=True)  # an interrupted copy
    png.unlink()
    val['images'][1]['file_name'] = cut.name
    ann_file.write_text(json.dumps(val))
    missing = tmp_path / 'no_such.pth'

    work = tmp_path / 'test'
    with pytest.raises(SystemExit) as stop:
        test.main([str(config), str(missing), '--work-dir', str(work), '--cfg-options',
                   f'test_dataloader.dataset.data_root={copy}/',
                   f'test_evaluator.ann_file={ann_file}'])
    message = str(stop.value.code)
    assert f'2 problem(s) in the inputs of {config} would stop or spoil testing' in message
    assert f'load_from: {missing} does not exist' in message
    assert f'{cut}: a truncated JPEG' in message and f'annotations from {ann_file}' in message
    assert '--skip-data-check tests without this check' in message
    assert not work.exists()

    out_dir = tmp_path / 'vis'
    with pytest.raises(SystemExit) as stop:
        infer.main([str(config), str(missing), str(copy / 'val'), '--out-dir', str(out_dir)])
    message = str(stop.value.code)
    assert '2 problem(s) in the inputs of tools/infer.py would stop or spoil inference' in message
    assert f'{missing}: the checkpoint does not exist' in message
    assert f'{cut}: a truncated JPEG' in message and 'move it out of the input' in message
    assert not out_dir.exists()
    # A config and an INPUT that are not there are named with the checkpoint, before the model
    # is built (the config used to fail only then, INPUT with a bare FileNotFoundError).
    no_config, no_input = tmp_path / 'no_config.py', tmp_path / 'no_images'
    with pytest.raises(SystemExit) as stop:
        infer.main([str(no_config), str(missing), str(no_input), '--out-dir', str(out_dir)])
    message = str(stop.value.code)
    assert '3 problem(s) in the inputs of tools/infer.py would stop or spoil inference' in message
    assert f'{no_config}: the config does not exist; give the path of a config file' in message
    assert f'{missing}: the checkpoint does not exist' in message
    assert f'{no_input}: no image or folder there' in message
    assert not out_dir.exists()


def test_pretrain_tool_checks_its_inputs_first(tmp_path):
    """tools/pretrain_fcmae.py names an image folder that is not there or holds no image, and a
    checkpoint to resume or export that is not there, before it builds or writes anything."""
    from tools import pretrain_fcmae
    work, gone = tmp_path / 'work', tmp_path / 'gone.pth'
    with pytest.raises(SystemExit) as stop:
        pretrain_fcmae.main([str(tmp_path / 'no_folder'), '--work-dir', str(work),
                             '--resume', str(gone), '--num-workers', '0'])
    message = str(stop.value.code)
    assert ('2 problem(s) in the inputs of tools/pretrain_fcmae.py would stop or spoil '
            'pretraining') in message
    assert f'{tmp_path / "no_folder"}: not a folder' in message
    assert f'load_from: {gone} does not exist' in message
    assert '(nothing was written)' in message
    notes = tmp_path / 'notes'
    notes.mkdir()
    (notes / 'readme.txt').write_text('no images here')
    with pytest.raises(SystemExit) as stop:
        pretrain_fcmae.main([str(notes), '--work-dir', str(work), '--num-workers', '0'])
    assert f'{notes}: no images (.jpg, .jpeg, .png' in str(stop.value.code)
    assert not work.exists()
    with pytest.raises(SystemExit) as stop:
        pretrain_fcmae.main(['--export-only', str(gone), '--out', str(tmp_path / 'b.pth')])
    message = str(stop.value.code)
    assert '1 problem(s) in the inputs of tools/pretrain_fcmae.py would stop or spoil the export'\
        in message
    assert f'{gone}: the checkpoint does not exist' in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ['notes']
