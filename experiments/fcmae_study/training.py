"""The FCMAE study's data, pretraining and fine-tuning, on in-memory tensors.

Both tools of the study (``study.py``, ``levers.py``) train with this module: it renders the
shapes scenes into tensors (``render_split``), FCMAE-pretrains an encoder on them (``pretrain``)
and fine-tunes and scores the segmentation demo's UperNet (``run_cell``). The models, the FCMAE
loss, the layer-decay constructor, ``build_optim_wrapper`` and the checkpoint export are the
library's own, and pretrained weights reach the segmentor through the backbone's ``init_cfg``
exactly as in a user's config.

NOTE: what this module re-implements of the path users run, and why it does not use it.

* ``finetune`` does what ``tools/train.py configs/upernet_cnxv2_demo_shapes.py`` does through
  mmengine's Runner: the model is built from that config, but the loop around it is this
  module's. The data are tensors, not files through mmseg's dataset and ``DataLoader``;
  ``seg_augment`` draws one scale, crop and flip per batch where the config's pipeline
  (``RandomResize``, ``RandomCrop`` with ``cat_max_ratio``, ``RandomFlip``) draws them per image;
  batches are sampled with replacement from a generator seeded per run; the loss is written out
  (class-weighted cross entropy plus 0.4 x the auxiliary head's, the config's weights) instead of
  the heads' ``loss_decode``; the schedule is a ``LambdaLR`` (linear warmup from 1/warmup, then
  linear decay to 0) instead of ``LinearLR`` + ``PolyLR``; the backbone can be frozen for the
  first ``Study.frozen_backbone_iters`` iterations and thawed mid-run (LP-FT), which the Runner
  path has no hook for; and val mIoU comes from one confusion matrix per split (equal to mmseg's
  ``IoUMetric``; ``tests/test_fcmae_study.py::test_iou_matches_mmseg_iou_metric``).
* ``pretrain`` does what ``tools/pretrain_fcmae.py`` does (the same ``FCMAE`` model, the
  official recipe's AdamW, 5 % warmup and cosine) on tensors: ``random_resized_crop`` is a batched
  bilinear ``grid_sample`` where the tool's pipeline crops each image bicubically, and masks come
  from a seeded generator.

Why not the Runner: the study runs hundreds of short fine-tunings (6-13 min each) in worker
processes fed from one shared tensor file, and every committed result under ``results/`` records
the command that made it with this loop. Moving the loop onto the Runner would change the
sampling, the augmentation and the schedule, so no committed number would reproduce from its
command any more; the study would have to be run again (days on 2 CPU cores). What a user gets
from ``tools/train.py`` is measured by the segmentation demo instead (docs/demo_experiments.md).
"""
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from torch import nn

import cnxv2_dense  # noqa: F401  (registers the backbone and constructor)
from cnxv2_dense.analysis import class_iou, confusion_matrix as count_confusion
from cnxv2_dense.arch import parse_arch
from cnxv2_dense.checkpoints import export_fcmae_backbone
from cnxv2_dense.datasets import SceneSpec, render_scene
from cnxv2_dense.models import FCMAE, IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parents[2]  # the repository
SEG_CONFIG = ROOT / 'configs' / 'upernet_cnxv2_demo_shapes.py'
RESNET_CONFIG = ROOT / 'configs' / 'upernet_r18_demo_shapes_control.py'
# The inits ``build_segmentor`` knows: V2-atto from scratch, from each pretraining, and a
# ResNet-18 from scratch.
ARMS: Tuple[str, ...] = ('scratch', 'fcmae', 'fcmae_no_grn', 'resnet18')
PRETRAINED_ARMS = {'fcmae': True, 'fcmae_no_grn': False}  # arm -> use_grn
NUM_CLASSES = 4  # background + circle, square, triangle
CLASS_WEIGHT = (0.2, 1.0, 1.0, 1.0)  # the seg demo's: background covers most pixels
AUX_WEIGHT = 0.4
# RGB, 0-255: the ImageNet statistics every config of the project normalises with.
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
IMAGE_SIZE = 128  # a 4 x 4 grid of the 32 px mask patches
# Seeds of the splits' generators (disjoint streams of scenes).
SPLIT_SEEDS = dict(pool=100, heldout=200, val=300)


@dataclass
class Study:
    """The size of one study (``study.py``'s defaults; ``--quick`` shrinks every number,
    ``QUICK``), and the settings of one fine-tuning run (``levers.py`` makes one per run)."""
    pool: int = 12000
    heldout: int = 200
    val: int = 300
    budgets: Tuple[int, ...] = (100, 400, 4000)
    seeds_smallest: Tuple[int, ...] = (0, 1)
    seeds_other: Tuple[int, ...] = (0,)
    arch: str = 'atto'  # ConvNeXt V2 variant of the V2 arms (the seg demo's)
    pretrain_epochs: int = 4
    pretrain_batch: int = 64
    pretrain_blr: float = 1.5e-3
    mask_ratio: float = 0.6
    norm_pix_loss: bool = True  # the official main_pretrain.py's default
    finetune_iters: int = 400
    finetune_batch: int = 8
    warmup_iters: int = 40
    lr_grid: Tuple[float, ...] = (2e-3, 5e-4)
    layer_decay: float = 0.9  # stage-wise, for pretrained backbones (the ADE20K recipe's)
    # Stage-wise layer decay of the from-scratch V2 (1: none). Below 1 its random backbone trains
    # slower than the head; near 0 it is all but frozen (the frozen-random control).
    scratch_layer_decay: float = 1.0
    # The first this many fine-tuning iterations train the heads only, on a frozen backbone; then
    # the whole model trains (linear probing, then fine-tuning: LP-FT, Kumar et al. 2022). A
    # random head's first gradients then cannot rewrite pretrained features.
    frozen_backbone_iters: int = 0
    # Scenes: textured shapes and backgrounds plus background clutter. Flat-coloured shapes are
    # told from the background by colour alone, so a head on any backbone finds them; here the
    # outline must do it.
    texture_prob: float = 0.5
    clutter: int = 3
    # Shape size (radius as a fraction of the image side) and most shapes per scene.
    min_radius_frac: float = 0.08
    max_radius_frac: float = 0.25
    max_objects: int = 4
    workers: int = 2  # single-threaded processes side by side
    arms: Tuple[str, ...] = ARMS  # a subset for a narrower study; always with 'scratch'


def scene(study: 'Study') -> SceneSpec:
    return SceneSpec(image_size=IMAGE_SIZE, min_objects=1, max_objects=study.max_objects,
                     min_radius_frac=study.min_radius_frac,
                     max_radius_frac=study.max_radius_frac,
                     texture_prob=study.texture_prob, clutter=study.clutter)


QUICK = Study(pool=64, heldout=16, val=16, budgets=(16, 32), seeds_smallest=(0, 1),
              seeds_other=(0,), pretrain_epochs=1, pretrain_batch=16, finetune_iters=6,
              finetune_batch=4, warmup_iters=2, lr_grid=(2e-3,))


# ---------------------------------------------------------------------------------------- data
@dataclass
class Split:
    images: torch.Tensor  # (N, 3, H, W) uint8 RGB
    labels: torch.Tensor  # (N, H, W) uint8, 0 = background


def render_split(count: int, seed: int, spec: Optional[SceneSpec] = None) -> Split:
    """``count`` scenes from the generator seeded with ``seed``, with semantic label maps
    (``spec`` defaults to the study's scenes)."""
    spec = scene(Study()) if spec is None else spec
    rng = np.random.default_rng(seed)
    images = np.empty((count, spec.image_size, spec.image_size, 3), dtype=np.uint8)
    labels = np.zeros((count, spec.image_size, spec.image_size), dtype=np.uint8)
    for i in range(count):
        image, instance_map, classes = render_scene(rng, spec)
        images[i] = image
        for k, cls in enumerate(classes):
            labels[i][instance_map == k + 1] = cls + 1
    return Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                 torch.from_numpy(labels))


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() - MEAN) / STD


def random_resized_crop(images: torch.Tensor, generator: torch.Generator,
                        scale: Tuple[float, float] = (0.2, 1.0)) -> torch.Tensor:
    """FCMAE's augmentation on a batch: a random crop of ``scale`` of the area (aspect 3/4-4/3)
    resized back to the input size (bilinear), flipped horizontally with probability 0.5."""
    n = images.shape[0]
    area = torch.empty(n).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)  # fractions of the side
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - w)  # centre in [-1, 1] coordinates
    cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode='bilinear', padding_mode='reflection',
                         align_corners=False)


def seg_augment(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The seg demo's augmentation on a batch: scale up 1-1.5x, random crop back, random flip."""
    size = images.shape[-1]
    factor = float(torch.empty(1).uniform_(1.0, 1.5, generator=generator))
    big = max(size, int(round(size * factor)))
    images = F.interpolate(images, size=(big, big), mode='bilinear', align_corners=False)
    labels = F.interpolate(labels[:, None].float(), size=(big, big), mode='nearest')[:, 0].long()
    top, left = (int(torch.randint(0, big - size + 1, (1,), generator=generator))
                 for _ in range(2))
    images = images[..., top:top + size, left:left + size]
    labels = labels[..., top:top + size, left:left + size]
    if bool(torch.rand(1, generator=generator) < 0.5):
        images, labels = images.flip(-1), labels.flip(-1)
    return images.contiguous(), labels.contiguous()


# ----------------------------------------------------------------------------------- pretrain
def pretrain(pool: Split, use_grn: bool, study: Study, seed: int, out_file: Path,
             log=print) -> Dict[str, float]:
    """FCMAE-pretrain ConvNeXt V2-atto on ``pool`` (the official recipe's optimiser, warmup and
    cosine schedule, normalised-pixel loss) and export its encoder to ``out_file``."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = FCMAE(arch=study.arch, mask_ratio=study.mask_ratio, norm_pix_loss=study.norm_pix_loss,
                  use_grn=use_grn, layer_scale_init_value=0. if use_grn else 1e-6)
    model.init_weights()
    lr = study.pretrain_blr * study.pretrain_batch / 256
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim <= 1 or name.endswith('.bias') else decay).append(param)
    optimizer = torch.optim.AdamW([dict(params=decay, weight_decay=0.05),
                                   dict(params=no_decay, weight_decay=0.)],
                                  lr=lr, betas=(0.9, 0.95))
    steps_per_epoch = len(pool.images) // study.pretrain_batch
    total = max(1, steps_per_epoch * study.pretrain_epochs)
    warmup = max(1, round(0.05 * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup
        else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    model.train()
    start, losses = time.time(), []
    for step in range(total):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(pool.images), generator=generator)
        index = order[(step % steps_per_epoch) * study.pretrain_batch:][:study.pretrain_batch]
        imgs = random_resized_crop(normalise(pool.images[index]), generator)
        mask = model.gen_random_mask(imgs, generator=generator)
        latent, mask = model.forward_encoder(imgs, mask)
        loss = model.forward_loss(imgs, model.forward_decoder(latent, mask), mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == total - 1:
            log(f'  pretrain {"grn" if use_grn else "no-grn"} step {step + 1}/{total} '
                f'loss {np.mean(losses[-50:]):.4f} ({time.time() - start:.0f} s)')
    ckpt = out_file.with_name(out_file.stem + '_fcmae.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(use_grn=use_grn, steps=total)), ckpt)
    export_fcmae_backbone(ckpt, out_file, meta=dict(images=len(pool.images),
                                                    epochs=study.pretrain_epochs))
    return dict(first_loss=float(np.mean(losses[:20])), last_loss=float(np.mean(losses[-50:])),
                seconds=time.time() - start, steps=total)


# ----------------------------------------------------------------------------------- finetune
def build_segmentor(arm: str, backbone_file: Optional[Path] = None,
                    arch: str = 'atto') -> nn.Module:
    """The seg demo's UperNet with the arm's backbone (V2 arms: ``arch``, the heads' inputs
    widened to its stages); pretrained weights come in through the backbone's ``init_cfg``
    exactly as in a user's config."""
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(str(RESNET_CONFIG if arm == 'resnet18' else SEG_CONFIG))
    model_cfg = copy.deepcopy(cfg.model)
    if arm == 'fcmae_no_grn':
        model_cfg.backbone.update(use_grn=False, layer_scale_init_value=1e-6)
    if arm != 'resnet18' and arch != model_cfg.backbone.arch:
        dims = list(parse_arch(arch)[1])
        model_cfg.backbone.arch = arch
        model_cfg.decode_head.in_channels = dims
        model_cfg.auxiliary_head.in_channels = dims[model_cfg.auxiliary_head.in_index]
    if backbone_file is not None:
        model_cfg.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(backbone_file))
    model = SEG_MODELS.build(model_cfg)
    model.init_weights()
    return model


def build_optimizer(model: nn.Module, arm: str, lr: float, study: Study):
    """AdamW as in the seg demo; stage-wise layer decay for pretrained ConvNeXt backbones."""
    if arm == 'resnet18':
        constructor, paramwise = 'DefaultOptimWrapperConstructor', None
    else:
        rate = study.layer_decay if arm in PRETRAINED_ARMS else study.scratch_layer_decay
        constructor = 'cnxv2_dense.LayerDecayOptimWrapperConstructor'
        paramwise = dict(decay_rate=rate, decay_type='stage_wise')
    cfg = dict(type='OptimWrapper', constructor=constructor,
               optimizer=dict(type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05,
                              foreach=True),
               clip_grad=dict(max_norm=10.0))
    if paramwise is not None:
        cfg['paramwise_cfg'] = paramwise
    return build_optim_wrapper(model, cfg)


def seg_logits(model: nn.Module, imgs: torch.Tensor, aux: bool = False):
    feats = model.extract_feat(imgs)
    size = imgs.shape[-2:]
    out = F.interpolate(model.decode_head(feats), size=size, mode='bilinear',
                        align_corners=False)
    if not aux:
        return out
    return out, F.interpolate(model.auxiliary_head(feats), size=size, mode='bilinear',
                              align_corners=False)


def finetune(model: nn.Module, arm: str, train: Split, lr: float, study: Study, seed: int,
             freeze_backbone: bool = False) -> nn.Module:
    """Train ``model`` on ``train`` for ``study.finetune_iters`` iterations of the seg demo's
    loss (class-weighted cross entropy, auxiliary head 0.4), linear warmup then linear decay.
    ``freeze_backbone`` trains the heads only; ``study.frozen_backbone_iters`` does so for the
    first iterations, after which the backbone joins at the schedule's lr of that moment."""
    if study.frozen_backbone_iters < 0:
        raise ValueError(f'frozen_backbone_iters must be >= 0 (0: the backbone trains from the '
                         f'first iteration), got {study.frozen_backbone_iters}')
    generator = torch.Generator().manual_seed(seed)
    if freeze_backbone:
        model.backbone.requires_grad_(False)
    wrapper = build_optimizer(model, arm, lr, study)
    # Frozen after the optimizer is built, so its parameters are in the optimizer when they thaw
    # (AdamW skips a parameter without a gradient, weight decay included).
    thaw_at = 0 if freeze_backbone else min(study.frozen_backbone_iters, study.finetune_iters)
    if thaw_at:
        model.backbone.requires_grad_(False)
    warmup, total = study.warmup_iters, study.finetune_iters
    schedule = torch.optim.lr_scheduler.LambdaLR(
        wrapper.optimizer, lambda s: (s + 1) / warmup if s < warmup
        else max(0., (total - s) / max(1, total - warmup)))
    weight = torch.tensor(CLASS_WEIGHT)
    model.train()
    if freeze_backbone or thaw_at:
        model.backbone.eval()
    for step in range(total):
        if thaw_at and step == thaw_at:
            model.backbone.requires_grad_(True)
            model.backbone.train()
        index = torch.randint(0, len(train.images), (study.finetune_batch,), generator=generator)
        imgs, labels = seg_augment(normalise(train.images[index]), train.labels[index], generator)
        logits, aux = seg_logits(model, imgs, aux=True)
        loss = (F.cross_entropy(logits, labels, weight=weight)
                + AUX_WEIGHT * F.cross_entropy(aux, labels, weight=weight))
        wrapper.update_params(loss)
        schedule.step()
    return model


@torch.no_grad()
def confusion_matrix(model: nn.Module, split: Split, batch: int = 32) -> torch.Tensor:
    model.eval()
    conf = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    for start in range(0, len(split.images), batch):
        pred = seg_logits(model, normalise(split.images[start:start + batch])).argmax(1)
        conf += count_confusion(pred, split.labels[start:start + batch], NUM_CLASSES)
    return conf


# IoU of each class from a (truth, prediction) confusion matrix, NaN for a class absent from
# both (mmseg's IoUMetric: totals over the whole split, not a mean of per-image IoUs).
iou_per_class = class_iou


def miou(conf: torch.Tensor) -> float:
    return float(np.nanmean(iou_per_class(conf).numpy()) * 100)


# -------------------------------------------------------------------------------- one run
@dataclass
class Record:
    arm: str
    labeled_images: int
    seed: int
    miou: float
    split: str = 'val'
    lr: float = 0.
    class_iou: List[float] = field(default_factory=list)
    seconds: float = 0.


def labeled_subset(pool: Split, count: int, seed: int) -> Split:
    """``count`` pool images drawn with ``seed``: the labels a user has for part of the pool."""
    index = torch.randperm(len(pool.images), generator=torch.Generator().manual_seed(seed))[:count]
    return Split(pool.images[index], pool.labels[index])


def run_cell(arm: str, train: Split, evaluate: Split, lr: float, study: Study, seed: int,
             backbone_file: Optional[Path], split: str, freeze_backbone: bool = False) -> Record:
    """Fine-tune ``arm`` (from ``backbone_file`` when given) on ``train`` and score it on
    ``evaluate`` (named ``split`` in the record)."""
    start = time.time()
    torch.manual_seed(seed)
    model = build_segmentor(arm, backbone_file, study.arch)
    finetune(model, arm, train, lr, study, seed, freeze_backbone)
    ious = iou_per_class(confusion_matrix(model, evaluate))
    return Record(arm, len(train.images), seed, float(np.nanmean(ious.numpy()) * 100), split, lr,
                  [round(float(v) * 100, 2) for v in ious], round(time.time() - start, 1))

