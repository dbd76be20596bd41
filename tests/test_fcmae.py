"""FCMAE pretraining: visible-only encoding, loss, masks, export to the backbone, data, tools."""
import copy
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from PIL import Image

from cnxv2_dense.datasets import (ImageFolderDataset, LoadImage, PackImageInputs,
                                  RandomResizedCrop, SceneSpec, list_images, write_coco_shapes)
from cnxv2_dense.checkpoints import arch_of, export_fcmae_backbone, fcmae_to_backbone_state_dict
from cnxv2_dense.models import FCMAE, GRN, ConvNeXtV2, parse_arch
from cnxv2_dense.registry import DATASETS, MODELS, TRANSFORMS

from .conftest import (ROOT, TINY_ARCH, assert_same_weights, final_weights,
                       run_killed_after_first_checkpoint, run_tool)

FCMAE_CONFIGS = {'atto': 'fcmae_cnxv2_atto_in1k.py', 'tiny': 'fcmae_cnxv2_t_in1k.py',
                 'base': 'fcmae_cnxv2_b_in1k.py', 'large': 'fcmae_cnxv2_l_in1k.py'}
OUTPUT_NORM_KEYS = {f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')}


@pytest.fixture(autouse=True)
def _one_thread():
    # NOTE: these tensors are tiny; on a shared 2-core machine intra-op threading mostly waits
    # on the other thread (10x slower here), so this module runs single-threaded.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_fcmae(**kwargs) -> FCMAE:
    kwargs.setdefault('decoder_dim', 32)
    model = FCMAE(arch=dict(TINY_ARCH), **kwargs)
    model.init_weights()
    return model


def randomise_zero_inits(model: FCMAE) -> None:
    """GRN gamma / beta start at zero (GRN = identity); give them values so GRN is exercised."""
    for name, param in model.named_parameters():
        if '.grn.' in name:
            torch.nn.init.normal_(param, std=0.5)


def visible_cells(mask: torch.Tensor, shape) -> torch.Tensor:
    """(N, L) patch mask -> (N, 1, h, w) bool, True at visible stride-32 cells (patch 32)."""
    return (mask == 0).view(mask.shape[0], 1, *shape)


# ----------------------------------------------------------------------- equivalence
@pytest.mark.parametrize('size,kwargs', [
    ((64, 96), dict()),
    ((96, 64), dict(layer_scale_init_value=0.5, norm_pix_loss=True)),
    ((128, 128), dict(patch_size=64, mask_ratio=0.5)),
    ((64, 128), dict(drop_path_rate=0.3)),
    ((64, 64), dict(with_cp=True)),
])
def test_visible_and_dense_masked_paths_agree(size, kwargs):
    model = tiny_fcmae(**kwargs).train()
    randomise_zero_inits(model)
    imgs = torch.randn(2, 3, *size)
    mask = model.gen_random_mask(imgs)
    results = {}
    for impl in ('visible', 'dense_masked'):
        model.zero_grad()
        torch.manual_seed(1)  # same drop-path draws for both (same order of random calls)
        latent, _ = model.forward_encoder(imgs, mask, impl=impl)
        loss = model.forward_loss(imgs, model.forward_decoder(latent, mask), mask)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[impl] = loss.detach(), latent.detach(), grads
    (loss_v, lat_v, grads_v), (loss_d, lat_d, grads_d) = results['visible'], results['dense_masked']
    torch.testing.assert_close(loss_v, loss_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lat_v, lat_d, rtol=1e-5, atol=1e-5)
    assert set(grads_v) == set(grads_d)
    # Every trainable parameter gets a gradient (nothing in the encoder is skipped).
    assert set(grads_v) == {n for n, p in model.named_parameters() if p.requires_grad}
    for name in grads_v:
        torch.testing.assert_close(grads_v[name], grads_d[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize('impl', ['visible', 'dense_masked'])
def test_fused_grn_gives_autograds_loss_and_gradients(impl):
    """The encoder (masked GRN statistics in 'dense_masked', tokens in 'visible') and the
    decoder run the fused GRN; switching every GRN to autograd's reference changes nothing but
    float32 rounding in the gradients."""
    fused = tiny_fcmae().train()
    randomise_zero_inits(fused)
    reference = copy.deepcopy(fused)
    grns = [m for m in reference.modules() if isinstance(m, GRN)]
    assert len(grns) == sum(TINY_ARCH['depths']) + 1  # every encoder block and the decoder's
    for module in grns:
        module.fused = False
    imgs = torch.randn(2, 3, 64, 96)
    mask = fused.gen_random_mask(imgs)
    results = []
    for model in (fused, reference):
        latent, _ = model.forward_encoder(imgs, mask, impl=impl)
        loss = model.forward_loss(imgs, model.forward_decoder(latent, mask), mask)
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss_f, grads_f), (loss_r, grads_r) = results
    assert torch.equal(loss_f, loss_r)  # the same forward ops
    for name, grad in grads_r.items():
        torch.testing.assert_close(grads_f[name], grad, rtol=1e-5, atol=1e-6, msg=name)


# ----------------------------------------------------------------------- independent reference
def reference_masked_encoder(encoder: ConvNeXtV2, imgs: torch.Tensor, mask: torch.Tensor,
                             patch_size: int, grn_over_batch: bool = False) -> torch.Tensor:
    """The masked ConvNeXt V2 encoder as the official TRAINING.md describes its JAX model.

    Written here from that description with plain torch ops on the encoder's parameters, sharing
    no code with either FCMAE path (no module forward, no mask helper, no layout helper): the
    mask is applied before and after every depthwise conv, and GRN's L2 norm is taken per image
    over the visible positions. ``grn_over_batch`` takes it over the visible positions of the
    whole batch instead (the official PyTorch MinkowskiGRN), as a control.
    """
    n, _, height, width = imgs.shape
    visible_cells = (1. - mask).reshape(n, 1, height // patch_size, width // patch_size)

    def visible_at(stride: int) -> torch.Tensor:  # (N, 1, H / stride, W / stride), 1 = visible
        repeat = patch_size // stride
        return visible_cells.repeat_interleave(repeat, 2).repeat_interleave(repeat, 3)

    def layer_norm_last(x, weight, bias):  # over the last axis, eps 1e-6
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + 1e-6) * weight + bias

    def layer_norm_channels(x, norm):  # (N, C, H, W) over C
        return layer_norm_last(x.permute(0, 2, 3, 1), norm.weight, norm.bias).permute(0, 3, 1, 2)

    x = imgs
    for i, stride in enumerate((4, 8, 16, 32)):
        down = encoder.downsample_layers[i]
        if i == 0:
            x = layer_norm_channels(F.conv2d(x, down[0].weight, down[0].bias, stride=4), down[1])
        else:
            x = F.conv2d(layer_norm_channels(x, down[0]), down[1].weight, down[1].bias, stride=2)
        vis = visible_at(stride)
        vis_last = vis.permute(0, 2, 3, 1)  # (N, H, W, 1)
        for block in encoder.stages[i]:
            y = F.conv2d(x * vis, block.dwconv.weight, block.dwconv.bias, padding=3,
                         groups=x.shape[1]) * vis
            y = layer_norm_last(y.permute(0, 2, 3, 1), block.norm.weight, block.norm.bias)
            y = y @ block.pwconv1.weight.t() + block.pwconv1.bias
            y = 0.5 * y * (1. + torch.erf(y / 2 ** .5))  # exact GELU
            squares = (y * vis_last) ** 2
            dims = (0, 1, 2) if grn_over_batch else (1, 2)
            gx = squares.sum(dim=dims, keepdim=True).sqrt()
            nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
            y = block.grn.gamma * (y * nx) + block.grn.beta + y
            y = y @ block.pwconv2.weight.t() + block.pwconv2.bias
            if block.gamma is not None:
                y = y * block.gamma
            x = x + y.permute(0, 3, 1, 2)
    return x * visible_at(32)


@pytest.mark.parametrize('size,kwargs', [
    ((64, 96), dict()),
    ((96, 64), dict(layer_scale_init_value=0.5, norm_pix_loss=False)),
    ((128, 128), dict(patch_size=64, mask_ratio=0.5)),
])
def test_both_paths_match_an_independent_masked_reference(size, kwargs):
    model = tiny_fcmae(**kwargs).train()
    with torch.no_grad():  # large weights everywhere: gradients of order 1, not 1e-4, so that
        for param in model.parameters():  # the 1e-5 tolerance below is a tight check
            param.normal_(std=0.3)
    imgs = torch.randn(3, 3, *size)
    mask = model.gen_random_mask(imgs)

    def loss_and_encoder_grads(encode):
        model.zero_grad()
        latent = encode()
        loss = model.forward_loss(imgs, model.forward_decoder(latent, mask), mask)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.encoder.named_parameters()
                 if p.grad is not None}
        return loss.detach(), grads

    ref_loss, ref_grads = loss_and_encoder_grads(
        lambda: reference_masked_encoder(model.encoder, imgs, mask, model.patch_size))
    assert set(ref_grads) == {n for n, p in model.encoder.named_parameters()}
    assert min(float(g.abs().max()) for g in ref_grads.values()) > 1e-3  # every one non-trivial
    for impl in ('visible', 'dense_masked'):
        loss, grads = loss_and_encoder_grads(
            lambda: model.forward_encoder(imgs, mask, impl=impl)[0])
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5, msg=impl)
        assert set(grads) == set(ref_grads), impl
        for name, grad in ref_grads.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-5,
                                       msg=f'{impl}: {name}')
    # Control: the batch-wide GRN statistic of the official PyTorch code is a different function,
    # and this comparison sees the difference (measured: gradients differ by up to ~0.8).
    batch_loss, batch_grads = loss_and_encoder_grads(
        lambda: reference_masked_encoder(model.encoder, imgs, mask, model.patch_size,
                                         grn_over_batch=True))
    assert max(float((batch_grads[n] - g).abs().max()) for n, g in ref_grads.items()) > 1e-2


@pytest.mark.parametrize('impl', ['visible', 'dense_masked'])
def test_masked_pixels_never_reach_visible_positions(impl):
    model = tiny_fcmae(layer_scale_init_value=0.5).eval()
    randomise_zero_inits(model)
    imgs = torch.randn(2, 3, 96, 128)
    mask = model.gen_random_mask(imgs)
    hidden_pixels = model.upsample_mask(mask, 32, (3, 4)).unsqueeze(1).bool()
    noisy = torch.where(hidden_pixels, imgs + 100 * torch.randn_like(imgs), imgs)
    with torch.no_grad():
        clean_out, _ = model.forward_encoder(imgs, mask, impl=impl)
        noisy_out, _ = model.forward_encoder(noisy, mask, impl=impl)
        # Control: changing visible pixels does change the visible outputs.
        changed = torch.where(hidden_pixels, imgs, imgs + torch.randn_like(imgs))
        changed_out, _ = model.forward_encoder(changed, mask, impl=impl)
    visible = visible_cells(mask, (3, 4)).expand_as(clean_out)
    assert torch.equal(clean_out[visible], noisy_out[visible])
    assert not torch.allclose(clean_out[visible], changed_out[visible])
    assert (clean_out[~visible] == 0).all()  # masked positions leave the encoder as zeros


# ----------------------------------------------------------------------- loss and masks
@pytest.mark.parametrize('norm_pix_loss', [False, True])
def test_loss_ignores_visible_patches(norm_pix_loss):
    model = tiny_fcmae(norm_pix_loss=norm_pix_loss)
    imgs = torch.randn(2, 3, 64, 96)
    mask = model.gen_random_mask(imgs)
    pred = torch.randn(2, 32 * 32 * 3, 2, 3)
    loss = model.forward_loss(imgs, pred, mask)
    visible = visible_cells(mask, (2, 3)).expand_as(pred)
    edited = torch.where(visible, pred + 5 * torch.randn_like(pred), pred)
    assert torch.equal(model.forward_loss(imgs, edited, mask), loss)
    edited_masked = torch.where(visible, pred, pred + 1.)
    assert not torch.allclose(model.forward_loss(imgs, edited_masked, mask), loss)

    # The definition: per-patch pixel MSE, averaged over masked patches only.
    target, patches = model.patchify(imgs), pred.flatten(2).transpose(1, 2)
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True)
                                                             + 1e-6) ** .5
    per_patch = [((patches[n, i] - target[n, i]) ** 2).mean()
                 for n in range(2) for i in range(6) if mask[n, i] == 1]
    torch.testing.assert_close(loss, torch.stack(per_patch).mean())


@pytest.mark.parametrize('size,ratio', [((224, 224), 0.6), ((64, 96), 0.6), ((128, 96), 0.75),
                                        ((96, 96), 0.25)])
def test_mask_has_the_requested_ratio(size, ratio):
    model = tiny_fcmae(mask_ratio=ratio)
    imgs = torch.zeros(16, 3, *size)
    mask = model.gen_random_mask(imgs)
    num_patches = (size[0] // 32) * (size[1] // 32)
    assert mask.shape == (16, num_patches)
    assert set(mask.unique().tolist()) <= {0., 1.}
    expected_masked = num_patches - int(num_patches * (1 - ratio))
    assert (mask.sum(1) == expected_masked).all()
    assert len({tuple(m.tolist()) for m in mask}) > 1  # random per sample
    upsampled = model.upsample_mask(mask, 8, (size[0] // 32, size[1] // 32))
    assert upsampled.shape == (16, size[0] // 4, size[1] // 4)
    assert torch.equal(upsampled[:, ::8, ::8].flatten(1), mask)
    gen = torch.Generator().manual_seed(3)
    again = torch.Generator().manual_seed(3)
    assert torch.equal(model.gen_random_mask(imgs, generator=gen),
                       model.gen_random_mask(imgs, generator=again))


def test_bad_sizes_and_ratios_fail_clearly():
    for ratio in (0., 1., 1.5, -0.1):
        with pytest.raises(ValueError, match='mask_ratio must be in'):
            FCMAE(arch=dict(TINY_ARCH), decoder_dim=8, mask_ratio=ratio)
    with pytest.raises(ValueError, match='multiple of 32'):
        FCMAE(arch=dict(TINY_ARCH), decoder_dim=8, patch_size=16)
    with pytest.raises(ValueError, match='encoder_impl'):
        FCMAE(arch=dict(TINY_ARCH), decoder_dim=8, encoder_impl='sparse')
    model = tiny_fcmae()
    with pytest.raises(ValueError, match='divisible by the patch size 32, got 70x64'):
        model(torch.randn(1, 3, 70, 64))
    with pytest.raises(ValueError, match='mask_ratio must be in'):
        model.gen_random_mask(torch.randn(1, 3, 64, 64), mask_ratio=1.0)
    with pytest.raises(ValueError, match='keeps 0 of 1 patches'):
        model(torch.randn(1, 3, 32, 32))  # a single patch cannot be split into seen / hidden
    uneven = torch.tensor([[1., 0., 0., 1.], [1., 1., 1., 0.]])
    with pytest.raises(ValueError, match='same, non-zero number of visible'):
        model.forward_encoder(torch.randn(2, 3, 64, 64), uneven)
    with pytest.raises(ValueError, match='mode must be'):
        model(torch.randn(1, 3, 64, 64), mode='features')


def test_patchify_unpatchify_and_reconstruct():
    model = tiny_fcmae(patch_size=64, mask_ratio=0.5).eval()
    imgs = torch.randn(2, 3, 128, 192)
    patches = model.patchify(imgs)
    assert patches.shape == (2, 6, 64 * 64 * 3)
    assert torch.equal(patches[0, 4].view(64, 64, 3), imgs[0, :, 64:128, 64:128].permute(1, 2, 0))
    assert torch.equal(model.unpatchify(patches, (2, 3)), imgs)
    out = model.reconstruct(imgs)
    keep = 1 - out['mask_pixels']
    assert out['pred'].shape == imgs.shape
    assert torch.equal(out['pasted'] * keep, imgs * keep)  # visible pixels come from the input
    samples = model(imgs, mode='predict')
    assert len(samples) == 2 and samples[0].pred_img.shape == (3, 128, 192)
    assert samples[0].mask.shape == (2, 3)
    pred, mask = model(imgs, mode='tensor')
    assert pred.shape == (2, 32 * 32 * 3, 4, 6) and mask.shape == (2, 6)


# ----------------------------------------------------------------------- training
def test_short_training_run_lowers_the_loss_on_images_it_never_sees(tmp_path):
    # Training images and held-out ones: the 'val' split is drawn from another seed (same scene
    # distribution, other scenes) and the loop below only ever reads the 'train' split.
    write_coco_shapes(tmp_path, num_train=16, num_val=8, spec=SceneSpec(image_size=64), seed=5)
    pipeline = [dict(type='cnxv2_dense.LoadImage'),
                dict(type='cnxv2_dense.RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.)),
                dict(type='RandomFlip', prob=0.5, direction='horizontal'),
                dict(type='cnxv2_dense.PackImageInputs')]
    dataset = DATASETS.build(dict(type='cnxv2_dense.ImageFolderDataset',
                                  data_root=str(tmp_path / 'train'), pipeline=pipeline))
    held_out = DATASETS.build(dict(type='cnxv2_dense.ImageFolderDataset',
                                   data_root=str(tmp_path / 'val'),
                                   pipeline=[dict(type='cnxv2_dense.LoadImage'),
                                             dict(type='cnxv2_dense.PackImageInputs')]))
    assert len(dataset) == 16 and len(held_out) == 8
    model = tiny_fcmae(decoder_dim=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95),
                                  weight_decay=0.05)
    np.random.seed(0)
    fixed = model.data_preprocessor(dict(inputs=[held_out[i]['inputs'] for i in range(8)]),
                                    False)
    fixed_mask = model.gen_random_mask(fixed['inputs'], generator=torch.Generator().manual_seed(0))

    def held_out_loss() -> float:
        with torch.no_grad():
            latent, _ = model.forward_encoder(fixed['inputs'], fixed_mask)
            return float(model.forward_loss(fixed['inputs'],
                                            model.forward_decoder(latent, fixed_mask), fixed_mask))

    before = held_out_loss()
    trained_on = set()
    for step in range(100):
        indices = [(8 * step + i) % len(dataset) for i in range(8)]
        trained_on.update(dataset.get_data_info(i)['img_path'] for i in indices)
        batch = [dataset[i] for i in indices]
        data = model.data_preprocessor(dict(inputs=[b['inputs'] for b in batch]), True)
        losses = model(**data, mode='loss')
        optimizer.zero_grad()
        losses['loss'].backward()
        optimizer.step()
    after = held_out_loss()
    # The held-out images are not among those trained on, neither as files nor as pixels.
    held_out_paths = {held_out.get_data_info(i)['img_path'] for i in range(len(held_out))}
    assert len(trained_on) == 16 and not trained_on & held_out_paths

    def pixels(path: str) -> str:
        return hashlib.sha256(np.asarray(Image.open(path)).tobytes()).hexdigest()
    assert not {pixels(p) for p in trained_on} & {pixels(p) for p in held_out_paths}
    # measured (default norm_pix_loss): 1.00 -> 0.77 on the held-out images, while 8 images of
    # the training set go 1.00 -> 0.54. The earlier 40 steps at lr 2e-3 lowered the training
    # images' loss (1.00 -> 0.90) but not the held-out one (1.00 -> 1.04). Generalising from 16
    # images is seed-dependent: other (data, torch) seeds gave 0.80 (7, 1) and 0.96 (11, 2).
    assert after < 0.9 * before, (before, after)


# ----------------------------------------------------------------------- export / fine-tune
@pytest.fixture
def exported_backbone(tmp_path):
    model = tiny_fcmae(layer_scale_init_value=0.)
    randomise_zero_inits(model)
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1, iter=10), state_dict=model.state_dict()), ckpt)
    out = tmp_path / 'backbone.pth'
    result = export_fcmae_backbone(ckpt, out, meta=dict(note='test'))
    return model, out, result


def test_export_gives_exactly_the_backbone_keys(exported_backbone):
    model, out, result = exported_backbone
    state = result['state_dict']
    encoder_keys = {k[len('encoder.'):] for k in model.state_dict() if k.startswith('encoder.')}
    assert set(state) == encoder_keys
    assert not any(k.startswith(('proj', 'mask_token', 'decoder', 'pred')) for k in state)
    assert result['meta']['arch'] == TINY_ARCH and result['meta']['epoch'] == 1
    assert result['meta']['note'] == 'test'
    saved = torch.load(out, weights_only=True)
    assert set(saved) == {'state_dict', 'meta'}
    assert fcmae_to_backbone_state_dict(saved['state_dict']).keys() == state.keys()  # idempotent
    assert arch_of(state) == (TINY_ARCH['depths'], TINY_ARCH['dims'])

    backbone = ConvNeXtV2(arch=dict(TINY_ARCH), init_cfg=dict(type='Pretrained',
                                                              checkpoint=str(out)))
    backbone.init_weights()
    own = backbone.state_dict()
    assert set(own) - set(state) == OUTPUT_NORM_KEYS  # nothing else is missing
    for key, value in state.items():
        assert torch.equal(own[key], value), key


def test_detection_demo_config_trains_from_the_export(exported_backbone):
    from mmdet.testing import demo_mm_inputs
    from mmengine.registry import init_default_scope
    _, out, result = exported_backbone
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', 'mask_rcnn_cnxv2_demo_shapes.py'))
    cfg.model.backbone.arch = dict(TINY_ARCH)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(out))
    cfg.model.neck.in_channels = TINY_ARCH['dims']
    init_default_scope('mmdet')
    from mmdet.registry import MODELS as DET_MODELS
    detector = DET_MODELS.build(cfg.model)
    detector.init_weights()
    for key, value in result['state_dict'].items():
        assert torch.equal(detector.backbone.state_dict()[key], value), key
    packed = demo_mm_inputs(batch_size=2, image_shapes=[(3, 64, 64)] * 2, num_items=[2, 1],
                            num_classes=3, with_mask=True)
    losses = detector(**detector.data_preprocessor(packed, True), mode='loss')
    total = sum(v if isinstance(v, torch.Tensor) else sum(v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert detector.backbone.stages[0][0].pwconv1.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------- configs
@pytest.mark.parametrize('arch', sorted(FCMAE_CONFIGS))
def test_fcmae_configs(arch):
    cfg = Config.fromfile(os.path.join(ROOT, 'configs', FCMAE_CONFIGS[arch]))
    assert cfg.model.arch == arch and cfg.model.mask_ratio == 0.6
    assert cfg.model.decoder_dim == 512 and cfg.model.decoder_depth == 1
    assert cfg.model.norm_pix_loss is True  # the official main_pretrain.py default
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet/train'
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, tuple(optimizer.betas), optimizer.weight_decay) == (
        'AdamW', 1.5e-4, (0.9, 0.95), 0.05)
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=256)
    # Paper Table 8 (pre-training setting): 800 (or 1600) epochs, 40 warmup epochs, cosine decay.
    # Checked on the schedule mmengine builds from the config (2 iterations per epoch), not on
    # the config's own numbers: peak lr at the end of epoch 40, zero after epoch 800.
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS
    wrapper = OptimWrapper(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.5e-4))
    schedulers = [PARAM_SCHEDULERS.build(copy.deepcopy(s.to_dict()),
                                         default_args=dict(optimizer=wrapper, epoch_length=2))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(2 * 800):
        lrs.append(wrapper.get_lr()['lr'][0])
        for scheduler in schedulers:
            scheduler.step()
    assert cfg.train_cfg.max_epochs == 800
    assert lrs[0] == pytest.approx(1.5e-4 * 1e-4)
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1.5e-4, rel=0.02) and abs(peak - 2 * 40) <= 1
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))  # cosine: never rises again
    assert lrs[-1] < 1e-3 * max(lrs)  # ~0 at the last iteration of epoch 800
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert (crop.scale, tuple(crop.crop_ratio_range), crop.interpolation) == (
        224, (0.2, 1.0), 'bicubic')
    with torch.device('meta'):  # shapes only: base / large are big for a unit test
        model = MODELS.build(cfg.model)
    assert isinstance(model, FCMAE) and model.encoder.depths == parse_arch(arch)[0]
    for transform in cfg.train_dataloader.dataset.pipeline:
        assert TRANSFORMS.build(copy.deepcopy(transform)) is not None


# ----------------------------------------------------------------------- data
def write_image_tree(root: Path) -> None:
    write_coco_shapes(root / 'src', num_train=6, num_val=0, spec=SceneSpec(image_size=64), seed=7)
    images = sorted((root / 'src' / 'train').glob('*.png'))
    (root / 'imgs' / 'a' / 'b').mkdir(parents=True)
    for i, path in enumerate(images[:3]):
        Image.open(path).save(root / 'imgs' / f'{i}.png')
    Image.open(images[3]).save(root / 'imgs' / 'a' / 'b' / 'deep.png')
    Image.open(images[4]).convert('RGB').save(root / 'imgs' / 'a' / 'photo.JPG')
    Image.open(images[5]).convert('L').save(root / 'imgs' / 'a' / 'grey.bmp')
    (root / 'imgs' / 'a' / 'broken.jpg').write_bytes(b'not an image at all')
    (root / 'imgs' / 'notes.txt').write_text('not an image')


def test_image_folder_dataset_and_transforms(tmp_path):
    write_image_tree(tmp_path)
    folder = tmp_path / 'imgs'
    names = [os.path.relpath(p, folder) for p in list_images(folder)]
    assert names == ['0.png', '1.png', '2.png', 'a/b/deep.png', 'a/broken.jpg', 'a/grey.bmp',
                     'a/photo.JPG']
    pipeline = [dict(type='cnxv2_dense.LoadImage'),
                dict(type='cnxv2_dense.RandomResizedCrop', scale=(32, 64)),
                dict(type='cnxv2_dense.PackImageInputs')]
    checked = ImageFolderDataset(data_root=str(folder), pipeline=pipeline, check_files=True)
    assert len(checked) == 6 and checked.skipped_files == [str(folder / 'a' / 'broken.jpg')]
    grey = [i for i in range(len(checked))
            if checked.get_data_info(i)['img_path'].endswith('grey.bmp')]
    item = checked[grey[0]]  # the grey BMP comes back as 3 channels
    assert item['inputs'].shape == (3, 32, 64) and item['inputs'].dtype == torch.uint8
    assert item['data_samples'].img_path.endswith('grey.bmp')

    # Without the up-front check a broken file is skipped (and reported) when it is loaded.
    lazy = ImageFolderDataset(data_root=str(folder), pipeline=pipeline)
    broken = [i for i in range(len(lazy)) if lazy.get_data_info(i)['img_path'].endswith('.jpg')]
    assert len(lazy) == 7 and lazy[broken[0]]['inputs'].shape == (3, 32, 64)
    assert lazy._reported == {str(folder / 'a' / 'broken.jpg')}
    assert LoadImage()(dict(img_path=str(folder / 'a' / 'broken.jpg'))) is None
    with pytest.raises(ValueError, match='Cannot read image'):
        LoadImage(skip_unreadable=False)(dict(img_path=str(folder / 'a' / 'broken.jpg')))
    with pytest.raises(FileNotFoundError, match='No readable images'):
        ImageFolderDataset(data_root=str(tmp_path / 'src' / 'annotations'))


def test_random_resized_crop_boxes():
    np.random.seed(0)
    crop = RandomResizedCrop(scale=16, crop_ratio_range=(0.2, 1.0))
    for _ in range(50):
        top, left, h, w = crop.crop_box(40, 60)
        assert 0 <= top and top + h <= 40 and 0 <= left and left + w <= 60
        assert 0.2 * 2400 * 0.9 <= h * w <= 2400 and 0.7 <= w / h <= 1.45
    # Impossible aspect ratios fall back to the largest central crop that fits.
    fallback = RandomResizedCrop(16, crop_ratio_range=(0.9, 1.), aspect_ratio_range=(3., 4.))
    assert fallback.crop_box(40, 60) == (10, 0, 20, 60)
    out = crop(dict(img=np.zeros((40, 60, 3), np.uint8)))
    assert out['img'].shape == (16, 16, 3) and out['img_shape'] == (16, 16)
    packed = PackImageInputs()(dict(img=np.zeros((5, 7), np.uint8), img_path='x'))
    assert packed['inputs'].shape == (1, 5, 7) and packed['data_samples'].img_path == 'x'
    with pytest.raises(ValueError, match='crop_ratio_range'):
        RandomResizedCrop(16, crop_ratio_range=(0., 1.))


# ----------------------------------------------------------------------- tools
def test_pretrain_tool_end_to_end(tmp_path):
    write_image_tree(tmp_path)
    work = tmp_path / 'work'
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'pretrain_fcmae.py'), str(tmp_path / 'imgs'),
           '--arch-dict', '{"depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]}',
           '--image-size', '64', '--epochs', '2', '--batch-size', '3', '--num-workers', '0',
           '--decoder-dim', '32', '--work-dir', str(work), '--log-interval', '1']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))  # see _one_thread
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count('Skipping unreadable image') == 1 and 'broken.jpg' in log
    assert 'Epoch(train) [2][2/2]' in log and 'eta:' in log  # 6 readable images / batch 3
    for name in ('epoch_1.pth', 'epoch_2.pth', 'backbone.pth'):
        assert (work / name).is_file(), name

    exported = torch.load(work / 'backbone.pth', weights_only=True)
    assert exported['meta']['images'] == 6
    assert [Path(p).name for p in exported['meta']['skipped_files']] == ['broken.jpg']
    backbone = ConvNeXtV2(arch=dict(TINY_ARCH),
                          init_cfg=dict(type='Pretrained', checkpoint=str(work / 'backbone.pth')))
    backbone.init_weights()
    assert set(backbone.state_dict()) - set(exported['state_dict']) == OUTPUT_NORM_KEYS
    for key, value in exported['state_dict'].items():
        assert torch.equal(backbone.state_dict()[key], value), key

    from tools import pretrain_fcmae, visualize_fcmae
    again = pretrain_fcmae.main(['--export-only', str(work / 'epoch_2.pth'),
                                 '--out', str(tmp_path / 'again.pth')])
    again_state = torch.load(again, weights_only=True)['state_dict']
    assert again_state.keys() == exported['state_dict'].keys()
    assert all(torch.equal(again_state[k], v) for k, v in exported['state_dict'].items())

    pngs = visualize_fcmae.main(['{"depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]}',
                                 str(work / 'epoch_2.pth'), str(tmp_path / 'imgs' / '0.png'),
                                 '--out', str(tmp_path / 'vis'), '--image-size', '64'])
    grid = np.asarray(Image.open(pngs[0]))
    assert grid.shape == (64 + visualize_fcmae.TITLE_HEIGHT, 4 * 64 + 3 * visualize_fcmae.GAP, 3)


def test_killed_and_resumed_pretraining_ends_like_an_uninterrupted_one(tmp_path):
    """SIGKILL after the first epoch's checkpoint, then --resume: the final FCMAE weights equal an
    uninterrupted run's bit for bit (the masks and crops draw from the checkpoint's generators)."""
    write_image_tree(tmp_path)
    pretrain = [sys.executable, 'tools/pretrain_fcmae.py', str(tmp_path / 'imgs'),
                '--arch-dict', '{"depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]}',
                '--image-size', '64', '--epochs', '4', '--save-interval', '1', '--batch-size', '2',
                '--num-workers', '0', '--decoder-dim', '32']
    run_tool([*pretrain, '--work-dir', str(tmp_path / 'whole')], OMP_NUM_THREADS='1')
    killed = tmp_path / 'killed'
    run_killed_after_first_checkpoint([*pretrain, '--work-dir', str(killed)], killed)
    out = run_tool([*pretrain, '--work-dir', str(killed), '--resume', str(killed / 'epoch_1.pth')],
                   OMP_NUM_THREADS='1')
    assert 'resumed epoch: 1' in out and 'Restored the random states' in out
    assert_same_weights(final_weights(killed / 'epoch_4.pth'),
                        final_weights(tmp_path / 'whole' / 'epoch_4.pth'))


def test_norm_pix_loss_is_on_by_default_and_can_be_turned_off(tmp_path):
    from tools import pretrain_fcmae
    assert FCMAE(arch=dict(TINY_ARCH), decoder_dim=8).norm_pix_loss is True
    folder = str(tmp_path)
    for flags, expected in [([], True), (['--norm-pix-loss'], True), (['--no-norm-pix-loss'], False)]:
        args = pretrain_fcmae.parse_args([folder, *flags])
        assert args.norm_pix_loss is expected, flags
        assert pretrain_fcmae.build_pretrain_config(args).model.norm_pix_loss is expected, flags


def test_train_tool_runs_the_imagenet_config_on_a_folder(tmp_path):
    write_image_tree(tmp_path)
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
           os.path.join(ROOT, 'configs', 'fcmae_cnxv2_atto_in1k.py'),
           '--work-dir', str(tmp_path / 'work'), '--cfg-options',
           f'train_dataloader.dataset.data_root={tmp_path / "imgs"}',
           'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False', 'train_dataloader.pin_memory=False',
           'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1']
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    # 7 files, the broken one is skipped when met; drop_last leaves one full batch of 4.
    assert 'Epoch(train) [1][1/1]' in log and 'loss:' in log
    assert 'Scaling the original LR by 0.015625' in log  # 1.5e-4 per 256 images, batch 4
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
