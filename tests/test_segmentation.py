"""UperNet segmentation configs and tools: every config builds with its recipe and optimizer
wrapper, a loss step and a sliding-window predict step run, and tools/train.py, tools/test.py,
--resume, tools/infer.py and the distributed launcher run a segmentation config on CPU."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from PIL import Image

from cnxv2_dense.datasets import PALETTE, SceneSpec, write_ade_shapes
from cnxv2_dense.utils import allow_mmengine_checkpoints

from .conftest import (ROOT, TINY_ARCH, alive, assert_same_weights, cmdline, final_weights,
                       processes, run_killed_after_first_checkpoint, run_tool)
from .distributed import (RECORD_EACH_PROCESS, assert_two_processes_agree_with_one,
                          free_port, recorded_buffers)

PYTHON = sys.executable
CONFIGS = Path(ROOT) / 'configs'
# config -> (arch, num_layers, crop, slide stride, stage-2 width = auxiliary head input). The
# published recipe values (lr, decay, schedule, weights, test) are pinned with their sources in
# test_published_recipes.py; this module checks that the configs build and train with them.
RECIPES = {
    'upernet_cnxv2_t_ade20k.py': ('tiny', 6, 512, 341, 384),
    'upernet_cnxv2_b_ade20k.py': ('base', 12, 512, 341, 512),
    'upernet_cnxv2_l_ade20k.py': ('large', 12, 512, 341, 768),
    'upernet_cnxv2_l_640_ade20k.py': ('large', 12, 640, 426, 768),
    'upernet_cnxv2_h_ade20k.py': ('huge', 12, 512, 341, 1408),
}
DEMO = 'upernet_cnxv2_demo_shapes.py'
BN = dict(type='BN', requires_grad=True)


def shrink(cfg: Config, init_cfg=None) -> Config:
    """The config's model with the tiny arch, BN instead of SyncBN and small heads (CPU tests)."""
    cfg.model.backbone.arch = dict(TINY_ARCH)
    cfg.model.backbone.init_cfg = init_cfg
    cfg.model.decode_head.update(in_channels=TINY_ARCH['dims'], channels=16, norm_cfg=BN)
    cfg.model.auxiliary_head.update(in_channels=TINY_ARCH['dims'][2], channels=16, norm_cfg=BN)
    return cfg


def build_segmentor(cfg: Config):
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def cpu_optim_wrapper(cfg: Config) -> dict:
    """The config's optimizer wrapper as a plain OptimWrapper (AMP needs a GPU in mmengine)."""
    optim = cfg.optim_wrapper.to_dict()
    if optim['type'] == 'AmpOptimWrapper':
        optim['type'] = 'OptimWrapper'
        optim.pop('loss_scale')
    return optim


def lr_per_param(optim_wrapper) -> dict:
    return {name: group['lr'] for group in optim_wrapper.optimizer.param_groups
            for name in group['param_names']}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_ade20k_config_has_the_recipe_and_builds(name, tmp_path):
    arch, num_layers, crop, stride, aux_in = RECIPES[name]
    cfg = Config.fromfile(str(CONFIGS / name))
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=['cnxv2_dense'], allow_failed_imports=False)
    assert (cfg.model.backbone.type, cfg.model.backbone.arch) == ('cnxv2_dense.ConvNeXtV2', arch)
    assert cfg.model.decode_head.type == 'UPerHead'
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 150
    assert cfg.model.decode_head.norm_cfg.type == cfg.model.auxiliary_head.norm_cfg.type == 'SyncBN'
    assert cfg.model.auxiliary_head.type == 'FCNHead'
    assert cfg.model.auxiliary_head.in_channels == aux_in
    assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(crop, crop), stride=(stride, stride))
    assert cfg.model.data_preprocessor.size == (crop, crop)
    assert cfg.train_dataloader.dataset.pipeline[3] == dict(
        type='RandomCrop', crop_size=(crop, crop), cat_max_ratio=0.75)
    optim = cfg.optim_wrapper
    assert optim.paramwise_cfg == dict(decay_rate=0.9, decay_type='stage_wise',
                                       num_layers=num_layers)

    # A local checkpoint replaces the URL, as --cfg-options model.backbone.init_cfg.checkpoint=...
    # does; the tiny model then starts from those weights.
    from cnxv2_dense.models import ConvNeXtV2
    source = ConvNeXtV2(arch=dict(TINY_ARCH))
    torch.save({'model': {k: v for k, v in source.state_dict().items()
                          if not k.startswith('norm')}}, tmp_path / 'fcmae.pt')
    local = dict(type='Pretrained', checkpoint=str(tmp_path / 'fcmae.pt'))
    model = build_segmentor(shrink(cfg, local))
    torch.testing.assert_close(model.backbone.stages[2][1].pwconv1.weight,
                               source.stages[2][1].pwconv1.weight)

    lrs = lr_per_param(build_optim_wrapper(model, cpu_optim_wrapper(cfg)))
    assert set(lrs) == {n for n, p in model.named_parameters() if p.requires_grad}
    # stage_wise: stage i has id i + 1, downsample layers 0, heads num_layers + 1.
    for stage in range(4):
        assert lrs[f'backbone.stages.{stage}.0.dwconv.weight'] == pytest.approx(
            1e-4 * 0.9 ** (num_layers - stage))
    assert lrs['backbone.downsample_layers.2.1.weight'] == pytest.approx(
        1e-4 * 0.9 ** (num_layers + 1))
    assert lrs['decode_head.fpn_bottleneck.conv.weight'] == 1e-4
    assert lrs['auxiliary_head.conv_seg.weight'] == 1e-4


def test_demo_config_builds_on_cpu_and_trains_its_optimizer():
    cfg = Config.fromfile(str(CONFIGS / DEMO))
    assert cfg.model.backbone.arch == 'atto' and cfg.model.backbone.init_cfg is None
    assert cfg.model.decode_head.norm_cfg == cfg.model.auxiliary_head.norm_cfg == BN
    assert cfg.train_dataloader.dataset.type == 'BaseSegDataset'
    assert cfg.train_dataloader.dataset.metainfo.classes == (
        'background', 'circle', 'square', 'triangle')
    assert [tuple(c) for c in cfg.train_dataloader.dataset.metainfo.palette] == list(PALETTE)
    assert cfg.val_evaluator.type == 'IoUMetric'
    # Background down-weighted in both losses; mmseg's class_weight cannot take padded (255)
    # pixels, so training crops are never padded (scale-up only, then a full crop).
    for head in (cfg.model.decode_head, cfg.model.auxiliary_head):
        assert head.loss_decode.class_weight == [0.2, 1.0, 1.0, 1.0]
    resize, crop = cfg.train_dataloader.dataset.pipeline[2:4]
    assert resize.type == 'RandomResize' and min(resize.ratio_range) >= 1.0
    assert resize.scale == crop.crop_size == cfg.model.data_preprocessor.size
    assert cfg.train_cfg.max_iters // cfg.train_cfg.val_interval >= 3  # mIoU logged as it rises
    model = build_segmentor(cfg)  # the real atto model, as the demo trains it
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(optim_wrapper).__name__ == 'OptimWrapper'
    assert len(optim_wrapper.optimizer.param_groups) > 1  # weight decay split by the constructor


def test_resnet_control_config_differs_from_the_demo_only_in_backbone_and_optimizer():
    demo = Config.fromfile(str(CONFIGS / DEMO))
    control = Config.fromfile(str(CONFIGS / 'upernet_r18_demo_shapes_control.py'))
    assert control.model.backbone.type == 'ResNetV1c' and control.model.backbone.depth == 18
    for key in ('train_dataloader', 'val_dataloader', 'train_cfg', 'param_scheduler'):
        assert control[key] == demo[key], key
    for head in ('decode_head', 'auxiliary_head'):
        ours, theirs = dict(demo.model[head]), dict(control.model[head])
        ours.pop('in_channels'), theirs.pop('in_channels')
        assert ours == theirs, head
    assert control.optim_wrapper.optimizer == demo.optim_wrapper.optimizer
    assert control.optim_wrapper.clip_grad == demo.optim_wrapper.clip_grad
    model = build_segmentor(control)
    build_optim_wrapper(model, control.optim_wrapper)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 128, 128), mode='tensor')  # BN in train mode needs 2
    assert logits.shape == (2, 4, 32, 32)  # stride 4, background + 3 classes


def test_loss_step_and_sliding_window_prediction():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    cfg = shrink(Config.fromfile(str(CONFIGS / 'upernet_cnxv2_t_ade20k.py')))
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(48, 48))
    cfg.model.decode_head.num_classes = cfg.model.auxiliary_head.num_classes = 4
    model = build_segmentor(cfg)

    shapes = [(64, 64), (56, 48)]  # training crops are at most the crop size
    samples = []
    for h, w in shapes:
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, h, w)))
        samples.append(sample)
    packed = dict(inputs=[torch.randint(0, 256, (3, h, w), dtype=torch.uint8) for h, w in shapes],
                  data_samples=samples)
    model.train()
    data = model.data_preprocessor(packed, True)
    assert data['inputs'].shape == (2, 3, 64, 64)  # padded to the crop size
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = losses['decode.loss_ce'] + losses['aux.loss_ce']
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.stages[0][0].pwconv1.weight.grad.abs().sum() > 0

    # A 96x80 image in 64x64 windows with stride 48: 2 rows x 2 columns of windows.
    model.eval()
    image = torch.randint(0, 256, (3, 96, 80), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(96, 80), ori_shape=(96, 80)))
    windows = []
    encode_decode = model.encode_decode
    def recording_encode_decode(x, metas):
        windows.append(tuple(x.shape[-2:]))
        return encode_decode(x, metas)

    model.encode_decode = recording_encode_decode
    with torch.no_grad():
        result, = model.test_step(dict(inputs=[image], data_samples=[sample]))
    assert windows == [(64, 64)] * 4
    assert result.pred_sem_seg.data.shape == (1, 96, 80)
    assert result.seg_logits.data.shape == (4, 96, 80)
    assert set(result.pred_sem_seg.data.unique().tolist()) <= {0, 1, 2, 3}


@pytest.mark.parametrize('gpu', [True, False], ids=['gpu', 'cpu'])
def test_amp_flag_and_checkpoint_override_on_segmentation_configs(gpu, monkeypatch):
    """--amp asks for mmengine's AmpOptimWrapper, which needs a GPU: with one (faked here, the
    wrapper is not built) the config keeps it; without one tools/train.py falls back to fp32."""
    from tools.train import build_train_config, parse_args
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: gpu)
    expected = ('AmpOptimWrapper', 'dynamic') if gpu else ('OptimWrapper', None)
    args = parse_args([str(CONFIGS / DEMO), '--amp', '--resume'])
    cfg = build_train_config(args)
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.get('loss_scale')) == expected
    assert cfg.optim_wrapper.constructor == 'cnxv2_dense.LayerDecayOptimWrapperConstructor'
    assert cfg.resume is True and cfg.load_from is None
    # The ADE20K recipes ask for AMP themselves.
    args = parse_args([str(CONFIGS / 'upernet_cnxv2_b_ade20k.py'), '--cfg-options',
                       'model.backbone.init_cfg.checkpoint=work_dirs/fcmae_b/backbone.pth'])
    cfg = build_train_config(args)
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.get('loss_scale')) == expected
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained',
                                               checkpoint='work_dirs/fcmae_b/backbone.pth')



def test_test_tool_tta_runs_the_multi_scale_test_of_the_config():
    from tools.test import build_test_config
    from tools.test import parse_args as parse_test_args
    args = parse_test_args([str(CONFIGS / 'upernet_cnxv2_b_ade20k.py'), 'ckpt.pth', '--tta'])
    cfg = build_test_config(args)
    assert cfg.model.type == 'SegTTAModel' and cfg.model.module.type == 'EncoderDecoder'
    assert cfg.model.module.backbone.arch == 'base'
    load, tta = cfg.test_dataloader.dataset.pipeline
    assert tta.type == 'TestTimeAug'
    assert [tuple(t.scale) for t in tta.transforms[0]] == [
        (1536, 384), (1792, 448), (2048, 512), (2304, 576), (2560, 640)]
    # Without --tta: the plain single-scale test.
    plain = build_test_config(parse_test_args([str(CONFIGS / 'upernet_cnxv2_b_ade20k.py'),
                                               'ckpt.pth']))
    assert plain.model.type == 'EncoderDecoder'
    assert [t.type for t in plain.test_dataloader.dataset.pipeline][:2] == [
        'LoadImageFromFile', 'Resize']
    # A detection config has no multi-scale test: --tta says so.
    args = parse_test_args([str(CONFIGS / 'mask_rcnn_cnxv2_t_coco.py'), 'ckpt.pth', '--tta'])
    with pytest.raises(RuntimeError, match='tta_pipeline'):
        build_test_config(args)


# --- The tools, run as a user would (subprocesses), on a tiny copy of the embedded data ---------

@pytest.fixture(scope='module')
def tiny_seg_config(tmp_path_factory):
    """A custom-data config in the style of docs/custom_data_seg.md: inherit the demo config."""
    root = tmp_path_factory.mktemp('seg_tools')
    data = root / 'data'
    write_ade_shapes(data, num_train=8, num_val=4, spec=SceneSpec(image_size=64), seed=3)
    config = root / 'tiny_upernet.py'
    config.write_text(f'''
_base_ = [{str(CONFIGS / DEMO)!r}]
data_root = {str(data) + '/'!r}
crop_size = (64, 64)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=dict(_delete_=True, depths=[1, 1, 2, 1], dims=[8, 16, 32, 64])),
    decode_head=dict(in_channels=[8, 16, 32, 64], channels=16),
    auxiliary_head=dict(in_channels=32, channels=16),
    test_cfg=dict(mode='slide', crop_size=(48, 48), stride=(32, 32)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(data_root=data_root, img_suffix='.png', seg_map_suffix='.png')
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=4, val_interval=2)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2, max_keep_ckpts=3))
''')
    return config, data


@pytest.mark.slow
def test_train_test_resume_and_infer(tiny_seg_config, tmp_path):
    config, data = tiny_seg_config
    work = tmp_path / 'work'
    out = run_tool([PYTHON, 'tools/train.py', str(config), '--work-dir', str(work)])
    assert out.count('mIoU:') == 2  # validated at iterations 2 and 4
    checkpoint = work / 'iter_4.pth'
    assert checkpoint.is_file()

    out = run_tool([PYTHON, 'tools/test.py', str(config), str(checkpoint), '--work-dir',
               str(tmp_path / 'test'), '--out', str(tmp_path / 'maps'),
               '--show-dir', str(tmp_path / 'vis')])
    assert 'mIoU:' in out
    assert re.search(r'\|\s+triangle\s+\|', out)  # mmseg's per-class table names our classes
    maps = sorted((tmp_path / 'maps').glob('*.png'))
    assert [p.name for p in maps] == [f'{i:06d}.png' for i in range(4)]
    assert np.asarray(Image.open(maps[0])).shape == (64, 64)
    assert set(np.unique(np.asarray(Image.open(maps[0])))) <= {0, 1, 2, 3}
    assert len(list((tmp_path / 'vis').rglob('*.png'))) == 4  # every test image drawn

    # mmseg's Python API loads the same checkpoint once mmengine's objects are allow-listed
    # (torch >= 2.6 loads weights-only) and predicts what tools/test.py wrote.
    from mmseg.apis import inference_model, init_model
    allow_mmengine_checkpoints()
    model = init_model(str(config), str(checkpoint), device='cpu')
    image_path = data / 'images' / 'validation' / '000000.png'
    predicted = inference_model(model, str(image_path)).pred_sem_seg.data[0].numpy()
    np.testing.assert_array_equal(predicted, np.asarray(Image.open(maps[0])))

    # --resume continues from iteration 4 (weights-only loading of mmengine's objects).
    out = run_tool([PYTHON, 'tools/train.py', str(config), '--work-dir', str(work), '--resume',
               '--cfg-options', 'train_cfg.max_iters=6'])
    assert 'resumed epoch: 0, iter: 4' in out
    assert (work / 'iter_6.pth').is_file()

    out_dir = tmp_path / 'overlays'
    run_tool([PYTHON, 'tools/infer.py', str(config), str(checkpoint),
         str(data / 'images' / 'validation'), '--out-dir', str(out_dir), '--device', 'cpu'])
    written = sorted(out_dir.glob('*.png'))
    assert [p.name for p in written] == [f'{i:06d}.png' for i in range(4)]
    overlay = np.asarray(Image.open(written[0]).convert('RGB'))
    image = np.asarray(Image.open(data / 'images' / 'validation' / '000000.png').convert('RGB'))
    assert overlay.shape == image.shape == (64, 64, 3)
    assert not np.array_equal(overlay, image)  # the colour-coded prediction is blended in


@pytest.mark.slow
@pytest.mark.parametrize('options', [
    ['train_dataloader.num_workers=0'],
    ['train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True']],
    ids=['main-process', 'worker'])
def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tiny_seg_config, tmp_path,
                                                               options):
    """SIGKILL after the first checkpoint (iteration 2), then --resume: the final weights equal an
    uninterrupted run's bit for bit. mmengine replays the batches already trained on; the random
    crops and flips of that replay draw in the main process (restored once the replay is over) or
    in a worker seeded anew (which then continues as in the uninterrupted run)."""
    config, _ = tiny_seg_config
    train = [PYTHON, 'tools/train.py', str(config)]
    run_tool([*train, '--work-dir', str(tmp_path / 'whole'), '--cfg-options', *options],
             OMP_NUM_THREADS='1')
    killed = tmp_path / 'killed'
    run_killed_after_first_checkpoint(
        [*train, '--work-dir', str(killed), '--cfg-options', *options, 'train_cfg.max_iters=1000'],
        killed)
    out = run_tool([*train, '--work-dir', str(killed), '--resume', str(killed / 'iter_2.pth'),
                    '--cfg-options', *options], OMP_NUM_THREADS='1')
    assert 'resumed epoch: 0, iter: 2' in out and 'Restored the random states' in out
    assert_same_weights(final_weights(killed / 'iter_4.pth'),
                        final_weights(tmp_path / 'whole' / 'iter_4.pth'))


@pytest.mark.slow
def test_train_names_bad_label_maps_before_training(tiny_seg_config, tmp_path):
    """A label map with a value that is no class stops train.py before the Runner is built (not
    at the iteration that first draws it), naming the file; --skip-data-check trains anyway."""
    from tools import train

    from cnxv2_dense.datasets.synthetic_shapes import ade_dirs
    config, data = tiny_seg_config
    copy = tmp_path / 'data'
    shutil.copytree(data, copy)
    _, labels = ade_dirs(copy, 'training')
    bad = sorted(labels.glob('*.png'))[5]
    values = np.asarray(Image.open(bad)).copy()
    values[0, :3] = 7  # the demo has 4 classes (background and three shapes)
    Image.fromarray(values).save(bad)
    work = tmp_path / 'work'
    argv = [str(config), '--work-dir', str(work), '--cfg-options',
            f'train_dataloader.dataset.data_root={copy}/',
            f'val_dataloader.dataset.data_root={copy}/']
    with pytest.raises(SystemExit) as stop:
        train.main(argv)
    message = str(stop.value.code)
    assert '1 problem(s)' in message and f'{bad}: values [7]' in message
    assert '--skip-data-check' in message
    assert not work.exists()  # stopped before anything was built or written
    # Without the check, training starts and stops at the first batch holding that map, with
    # torch's message and no file name (what the check replaces).
    proc = subprocess.run([PYTHON, 'tools/train.py', *argv, '--skip-data-check'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'))
    assert proc.returncode != 0 and 'out of bounds' in proc.stderr
    assert bad.name not in proc.stderr


def test_test_tool_checks_the_test_set_first(tiny_seg_config, tmp_path):
    """tools/test.py checks the label maps of its test set (and its checkpoint) as train.py
    checks the training data, and stops before anything is built."""
    from tools import test

    from cnxv2_dense.datasets.synthetic_shapes import ade_dirs
    config, data = tiny_seg_config
    copy = tmp_path / 'data'
    shutil.copytree(data, copy)
    _, labels = ade_dirs(copy, 'validation')
    bad = sorted(labels.glob('*.png'))[1]
    Image.open(bad).convert('RGB').save(bad)  # a map saved as colours
    work = tmp_path / 'test'
    with pytest.raises(SystemExit) as stop:
        test.main([str(config), str(tmp_path / 'no_such.pth'), '--work-dir', str(work),
                   '--cfg-options', f'test_dataloader.dataset.data_root={copy}/'])
    message = str(stop.value.code)
    assert '2 problem(s)' in message and 'would stop or spoil testing' in message
    assert f'{bad}: a RGB image' in message and 'no_such.pth does not exist' in message
    assert not work.exists()


def test_heads_with_another_number_of_classes_are_named(tiny_seg_config):
    from cnxv2_dense.checks import segmentation_data_problems
    config, _ = tiny_seg_config
    cfg = Config.fromfile(str(config))
    assert segmentation_data_problems(cfg) == []
    cfg.model.auxiliary_head.num_classes = 150  # left at ADE20K's by a copied config
    [problem] = segmentation_data_problems(cfg)
    assert problem.startswith('model.auxiliary_head.num_classes is 150')
    assert 'has 4 classes' in problem


@pytest.mark.slow
def test_distributed_launcher_on_cpu_with_gloo(tiny_seg_config, tmp_path):
    """Two processes train and validate; without SyncBN (it needs GPUs) each process's BN layers
    gather their own running statistics, and these are averaged so that the checkpoint and the
    validation of both processes use the same ones."""
    config, _ = tiny_seg_config
    recorded = tmp_path / 'recorded.py'
    recorded.write_text(f'_base_ = [{str(config)!r}]\n{RECORD_EACH_PROCESS}')
    work = tmp_path / 'dist'
    out = run_tool(['bash', 'tools/dist_train.sh', str(recorded), '2', '--work-dir', str(work),
               '--cfg-options', 'train_cfg.max_iters=2', 'default_hooks.checkpoint.interval=2'],
              PORT=str(free_port()))
    assert (work / 'iter_2.pth').is_file()
    assert 'Distributed training: True' in out and 'GPU number: 2' in out
    assert out.count('mIoU:') == 1  # validated at iteration 2 across both processes
    # Each process's running statistics after iteration 2, their mean in the checkpoint, and
    # that mean in both processes when they validate.
    own = [recorded_buffers(work / f'buffers_rank{rank}_iter2.pth') for rank in (0, 1)]
    saved = torch.load(work / 'iter_2.pth', map_location='cpu', weights_only=False)['state_dict']
    names = sorted(set(own[0]) & set(saved))  # (the data preprocessor's mean / std are not saved)
    assert 'decode_head.bottleneck.bn.running_var' in names
    assert not all(torch.equal(own[0][name], own[1][name]) for name in names)  # the halves differ
    for rank in (0, 1):
        validated = recorded_buffers(work / f'val_buffers_rank{rank}_iter2.pth')
        for name in names:
            torch.testing.assert_close(saved[name], (own[0][name] + own[1][name]) / 2)
            assert torch.equal(validated[name], saved[name]), (rank, name)
    # dist_test.sh: two processes evaluate the checkpoint as one process does
    checkpoint = str(work / 'iter_2.pth')
    split = run_tool(['bash', 'tools/dist_test.sh', str(config), checkpoint, '2',
                      '--work-dir', str(tmp_path / 'dist_test')], PORT=str(free_port()))
    assert 'Distributed training: True' in split and 'GPU number: 2' in split
    whole = run_tool([PYTHON, 'tools/test.py', str(config), checkpoint,
                      '--work-dir', str(tmp_path / 'test')])
    miou = re.compile(r'mIoU: ([0-9.]+)')
    assert len(miou.findall(split)) == 1 and miou.findall(split) == miou.findall(whole)


@pytest.mark.slow
def test_two_processes_agree_with_one(tiny_seg_config, tmp_path):
    """Two processes (gloo, CPU) with half the batch each train as one process with the whole
    batch, from the same weights and data: the first iterations' losses (the mean of the two
    processes') and the weights after them agree to float precision. So that this holds by
    design (docs/runs.md), the heads use GroupNorm (with BN each process normalises with its
    half's statistics), the loss has no class weights (mmseg divides a class-weighted loss by
    each process's sum of weights), and nothing draws at random (no augmentation, dropout or drop
    path). SGD, whose step is proportional to the gradient: a gradient summed over the processes
    instead of averaged would show (Adam's step hardly changes with the gradient's scale)."""
    config, _ = tiny_seg_config
    exact = tmp_path / 'exact.py'
    exact.write_text(f"""_base_ = [{str(config)!r}]
{RECORD_EACH_PROCESS}
gn = dict(type='GN', num_groups=4, requires_grad=True)
plain_loss = dict(class_weight=None)  # (weighted: normalised by each process's sum of weights)
model = dict(decode_head=dict(norm_cfg=gn, dropout_ratio=0.0, loss_decode=plain_loss),
             auxiliary_head=dict(norm_cfg=gn, dropout_ratio=0.0, loss_decode=plain_loss))
optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=0.01, weight_decay=0.0))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
                  dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=4, sampler=dict(type='InfiniteSampler', shuffle=False),
                        dataset=dict(pipeline=train_pipeline))
val_cfg = None
val_dataloader = None
val_evaluator = None
train_cfg = dict(max_iters=3)
default_hooks = dict(checkpoint=dict(interval=3))
""")
    whole, split = tmp_path / 'whole', tmp_path / 'split'
    run_tool([PYTHON, 'tools/train.py', str(exact), '--work-dir', str(whole)])
    run_tool(['bash', 'tools/dist_train.sh', str(exact), '2', '--work-dir', str(split),
              '--cfg-options', 'train_dataloader.batch_size=2'], PORT=str(free_port()))
    assert_two_processes_agree_with_one(whole, split, 'iter_3.pth')


@pytest.mark.slow
def test_distributed_resume_gives_each_process_its_random_states(tiny_seg_config, tmp_path):
    """Two processes, each seeded differently (diff_rank_seed): resumed from the iteration-2
    checkpoint of a run (what a kill after it leaves), the run ends with the uninterrupted run's
    weights, bit for bit."""
    config, _ = tiny_seg_config
    options = ['--cfg-options', 'train_dataloader.num_workers=1',
               'train_dataloader.persistent_workers=True', 'randomness.diff_rank_seed=True']
    whole = tmp_path / 'whole'
    run_tool(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(whole),
              *options], PORT=str(free_port()), OMP_NUM_THREADS='1')
    states = torch.load(whole / 'iter_2.pth', weights_only=False)['random_states']
    assert len(states) == 2 and not torch.equal(states[0]['torch'], states[1]['torch'])
    resumed = tmp_path / 'resumed'
    resumed.mkdir()
    shutil.copy(whole / 'iter_2.pth', resumed / 'iter_2.pth')
    out = run_tool(['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(resumed),
                    '--resume', str(resumed / 'iter_2.pth'), *options], PORT=str(free_port()),
                   OMP_NUM_THREADS='1')
    assert 'Restored the random states' in out
    assert_same_weights(final_weights(resumed / 'iter_4.pth'), final_weights(whole / 'iter_4.pth'))


def process_tree(root: int) -> dict:
    """pid -> (parent pid, start time) of ``root`` and every live process below it."""
    table = processes()
    if root not in table:
        return {}
    found = {root: (table[root][0], table[root][2])}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state, start) in table.items():
            if ppid == parent and pid not in found and state != 'Z':
                found[pid] = (ppid, start)
                frontier.append(pid)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc; prctl is Linux')
@pytest.mark.parametrize('victim', ['launcher', 'rank'])
def test_a_killed_distributed_run_leaves_nothing_running(tiny_seg_config, tmp_path, victim):
    """SIGKILL of the launcher (tools/dist_train.sh: a kill -9, a preempted job's main process)
    or of one rank (the OOM killer picks the largest process) ends every process of the run:
    torchrun, both ranks and their dataloader workers. Ranks whose torchrun was killed used to
    train on, orphaned, with their workers."""
    config, _ = tiny_seg_config
    proc = subprocess.Popen(
        ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', 'train_dataloader.num_workers=1',
         'train_dataloader.persistent_workers=True', 'train_cfg.max_iters=100000',
         'train_cfg.val_interval=100000', 'default_hooks.checkpoint.interval=100000'],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=ROOT, PYTHON=PYTHON, OMP_NUM_THREADS='1',
                 PORT=str(free_port())))
    run = {}
    try:
        deadline = time.monotonic() + 600  # (a loaded machine takes minutes to start them)
        ranks, workers = [], []
        while not workers and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            tree = process_tree(proc.pid)
            run.update({pid: start for pid, (_, start) in tree.items()})  # (to clean up)
            # ranks: the train.py processes whose parent is not a train.py process (torchrun)
            train = {pid for pid in tree if b'tools/train.py' in cmdline(pid)}
            agents = {pid for pid in train if b'torch.distributed.run' in cmdline(pid)}
            ranks = sorted(pid for pid in train - agents if tree[pid][0] in agents)
            workers = sorted(pid for pid in tree if tree[pid][0] in ranks)
            if len(workers) < 2:
                workers = []
        assert len(ranks) == 2 and len(workers) == 2, (
            f'the run did not start 2 ranks with a worker each (exit status {proc.poll()})')
        time.sleep(3)  # the workers are loading batches
        run = {pid: start for pid, (_, start) in process_tree(proc.pid).items()}
        # torchrun (the launcher's pid, exec'd), 2 ranks, 2 workers
        assert len(run) == 5, {pid: cmdline(pid)[:120] for pid in run}
        assert all(alive(pid, start) for pid, start in run.items())
        os.kill(proc.pid if victim == 'launcher' else ranks[0], signal.SIGKILL)
        # NOTE: the kernel ends the processes whose parent died at once; torchrun, after a rank
        # died, stops the other one (SIGTERM), reports the failure and exits: about 1 s on an
        # idle machine, over 30 s on one whose cores are taken by other jobs
        deadline = time.monotonic() + 120
        while any(alive(pid, start) for pid, start in run.items()):
            proc.poll()  # (reaps the launcher once it ends)
            left = {pid: cmdline(pid)[:120] for pid, start in run.items() if alive(pid, start)}
            assert time.monotonic() < deadline, f'processes outlived the killed run: {left}'
            time.sleep(0.2)
    finally:
        for pid, start in run.items():  # leave nothing behind if the test failed
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


THREAD_NAMES_AROUND_TRAIN = """
import os, runpy, sys
import cnxv2_dense.utils as utils
names = lambda: sorted(open(f'/proc/self/task/{t}/comm').read().strip()
                       for t in os.listdir('/proc/self/task'))
finish = utils.finish_distributed
def finish_and_record():
    print('WITH GROUP', names())
    finish()
utils.finish_distributed = finish_and_record  # train.py imports it from here
runpy.run_path('tools/train.py', run_name='train')['main'](sys.argv[1:])
print('AFTER TRAIN', names())
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path('/proc/self/task').is_dir(), reason='reads thread names in /proc')
def test_distributed_train_joins_gloo_threads_before_exit(tiny_seg_config, tmp_path):
    """gloo's worker threads must be gone when train.py returns: one left running while the
    interpreter shuts down can abort the finished process (SIGABRT, seen about 1 run in 7 under
    dist_train.sh while the Runner's DDP model still held the group at exit)."""
    config, _ = tiny_seg_config
    out = run_tool([PYTHON, '-c', THREAD_NAMES_AROUND_TRAIN, str(config), '--work-dir',
                    str(tmp_path / 'work'), '--launcher', 'pytorch',
                    '--cfg-options', 'train_cfg.max_iters=2'],
                   RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                   MASTER_PORT=str(free_port()))
    assert 'Distributed training: True' in out
    with_group = re.search(r'WITH GROUP (.*)', out).group(1)
    after = re.search(r'AFTER TRAIN (.*)', out).group(1)
    assert 'pt_gloo_runloop' in with_group  # the names this test looks for
    assert 'gloo' not in after, after


def guide_python_blocks() -> list:
    """The python code blocks of docs/custom_data_seg.md, as written there."""
    text = (Path(ROOT) / 'docs' / 'custom_data_seg.md').read_text()
    return re.findall(r'```python\n(.*?)```', text, flags=re.S)


def guide_configs() -> list:
    """The two whole configs the guide shows (the blocks with a ``_base_``)."""
    blocks = [block for block in guide_python_blocks() if '_base_' in block]
    assert len(blocks) == 2, 'the guide shows a demo-based and a T-based config'
    return blocks


def test_guide_fine_tune_snippet_loads_on_the_demo_config(tmp_path):
    """The guide's snippet for fine-tuning a demo-based config replaces its ``init_cfg=None``."""
    snippets = [b for b in guide_python_blocks() if '_base_' not in b and 'Pretrained' in b]
    assert len(snippets) == 1
    config = tmp_path / 'demo_fine_tune.py'
    config.write_text(f'_base_ = [{str(CONFIGS / DEMO)!r}]\n' + snippets[0])
    backbone = Config.fromfile(str(config)).model.backbone
    assert backbone.init_cfg.type == 'Pretrained'
    assert backbone.init_cfg.checkpoint.endswith('convnextv2_atto_1k_224_fcmae.pt')
    assert '_delete_' not in backbone.init_cfg and backbone.arch == 'atto'


@pytest.mark.parametrize('index', [0, 1], ids=['from_demo', 'from_t'])
def test_guide_configs_load_a_custom_dataset(index, tmp_path):
    """Each guide config, pointed at a dataset in the guide's layout, builds its datasets with the
    user's classes and palette and sizes both heads for them."""
    from mmseg.registry import DATASETS
    block = guide_configs()[index]
    data = tmp_path / 'my_seg'
    write_ade_shapes(data, num_train=2, num_val=2, spec=SceneSpec(image_size=64), seed=5)
    for image in data.glob('images/*/*.png'):  # the guide's data has .jpg images
        Image.open(image).convert('RGB').save(image.with_suffix('.jpg'))
        image.unlink()
    config = tmp_path / 'my_config.py'
    config.write_text(block.replace("'./", repr(str(CONFIGS) + '/')[:-1])
                      .replace("'data/my_seg/'", repr(str(data) + '/')))
    cfg = Config.fromfile(str(config))
    classes = cfg.metainfo['classes']
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == len(classes)
    init_default_scope('mmseg')
    for loader, count in ((cfg.train_dataloader, 2), (cfg.val_dataloader, 2)):
        dataset = DATASETS.build(loader.dataset)
        assert len(dataset) == count
        assert dataset.metainfo['classes'] == classes
        assert [tuple(c) for c in dataset.metainfo['palette']] == [
            tuple(c) for c in cfg.metainfo['palette']]
        sample = dataset[0]
        labels = set(sample['data_samples'].gt_sem_seg.data.unique().tolist())
        # 0..3 as written; reduce_zero_label maps 0 to 255 (ignored) and shifts the rest down.
        allowed = {0, 1, 2, 3} if not cfg.train_dataloader.dataset.get(
            'reduce_zero_label') else {255, 0, 1, 2}
        assert labels <= allowed and len(labels) > 1
