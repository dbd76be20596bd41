"""Does in-domain FCMAE pretraining pay off? The whole comparison in one command.

    python tools/fcmae_study.py                 # the full study (its size: the ``Study`` defaults)
    python tools/fcmae_study.py --quick         # a two-minute smoke run of the same code path

On the embedded shapes data (``cnxv2_dense.datasets.render_scene`` with textures and clutter,
see ``Study.texture_prob`` and ``Study.clutter``) it

1. renders an unlabeled pretraining pool, a labeled held-out split (for choosing the
   fine-tuning learning rate) and a labeled val split (the one the table reports), all disjoint;
2. FCMAE-pretrains ConvNeXt V2 (``fcmae``) and the same architecture without GRN, layer scale on
   (``fcmae_no_grn``, the paper's "FCMAE without GRN" row) on the pool, once per arm;
3. fine-tunes UperNet (the segmentation demo's head, ``configs/upernet_cnxv2_demo_shapes.py``)
   with each backbone, from scratch (``scratch``), from each pretraining, and a ResNet-18 from
   scratch (``resnet18``, ``configs/upernet_r18_demo_shapes_control.py``) on label budgets
   drawn from the pool, every arm with the same schedule;
4. picks each arm's learning rate on the held-out split at the smallest budget, then reports
   val mIoU (background + 3 shape classes) for every budget and seed;
5. writes ``OUT/results.json`` (``{"command", "records": [{arm, labeled_images, seed, miou}]}``
   plus the selection runs and the frozen-backbone probes), ``OUT/results.md`` and
   ``OUT/results.png``, and keeps the pretrained checkpoints in ``WORK_DIR``.

Everything runs in one process on in-memory tensors (no image files, no data loader), so that the
full study fits about an hour and a half on 2 CPU cores; the models, the FCMAE loss, the
layer-decay constructor and the checkpoint export are the library's own.
"""
import argparse
import copy
import json
import math
import os.path as osp
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from torch import nn  # noqa: E402

import cnxv2_dense  # noqa: E402,F401  (registers the backbone and constructor)
from cnxv2_dense.datasets import SceneSpec, render_scene  # noqa: E402
from cnxv2_dense.arch import parse_arch  # noqa: E402
from cnxv2_dense.analysis import class_iou, confusion_matrix as count_confusion  # noqa: E402
from cnxv2_dense.checkpoints import export_fcmae_backbone  # noqa: E402
from cnxv2_dense.models import FCMAE, IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEG_CONFIG = ROOT / 'configs' / 'upernet_cnxv2_demo_shapes.py'
RESNET_CONFIG = ROOT / 'configs' / 'upernet_r18_demo_shapes_control.py'
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
    """The size of one study. ``--quick`` shrinks every number (``QUICK``)."""
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


# ------------------------------------------------------------------------------------ study
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
             backbones: Dict[str, Path], split: str, freeze_backbone: bool = False) -> Record:
    start = time.time()
    torch.manual_seed(seed)
    model = build_segmentor(arm, backbones.get(arm), study.arch)
    finetune(model, arm, train, lr, study, seed, freeze_backbone)
    ious = iou_per_class(confusion_matrix(model, evaluate))
    return Record(arm, len(train.images), seed, float(np.nanmean(ious.numpy()) * 100), split, lr,
                  [round(float(v) * 100, 2) for v in ious], round(time.time() - start, 1))


def summarise(records: Sequence[Record]) -> Dict[Tuple[str, int], Tuple[float, float, int]]:
    """(arm, budget) -> (mean, spread = max - min, runs) of the val records."""
    cells: Dict[Tuple[str, int], List[float]] = {}
    for r in records:
        if r.split == 'val':
            cells.setdefault((r.arm, r.labeled_images), []).append(r.miou)
    return {key: (float(np.mean(v)), float(np.max(v) - np.min(v)), len(v))
            for key, v in cells.items()}


def markdown_table(records: Sequence[Record], budgets: Sequence[int]) -> str:
    cells = summarise(records)
    lines = ['| arm | ' + ' | '.join(f'{b} labels' for b in budgets) + ' |',
             '|---|' + '---:|' * len(budgets)]
    for arm in (a for a in ARMS if any((a, b) in cells for b in budgets)):
        row = []
        for b in budgets:
            if (arm, b) not in cells:
                row.append('')
                continue
            mean, spread, runs = cells[arm, b]
            row.append(f'{mean:.1f}' + (f' (±{spread / 2:.1f}, {runs} seeds)' if runs > 1 else ''))
        lines.append(f'| {arm} | ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def plot(records: Sequence[Record], budgets: Sequence[int], out_file: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cells = summarise(records)
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm in (a for a in ARMS if any((a, b) in cells for b in budgets)):
        xs = [b for b in budgets if (arm, b) in cells]
        ax.errorbar(xs, [cells[arm, b][0] for b in xs],
                    yerr=[cells[arm, b][1] / 2 for b in xs], marker='o', capsize=3, label=arm)
    ax.set_xscale('log')
    ax.set_xticks(list(budgets), [str(b) for b in budgets])
    ax.set_xlabel('labeled training images')
    ax.set_ylabel('val mIoU (%)')
    ax.set_title('UperNet on textured shapes: FCMAE vs scratch')
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_file, dpi=120)
    plt.close(fig)


# The splits, loaded once by each worker process (``_init_worker``).
_DATA: Dict[str, Split] = {}


def _init_worker(data_file: str) -> None:
    torch.set_num_threads(1)
    MMLogger.get_instance('fcmae_study', log_level='WARNING')
    _DATA.update({name: Split(*pair) for name, pair in torch.load(data_file).items()})


def _pretrain_job(job: tuple) -> Dict[str, float]:
    arm, study, out_file = job
    return pretrain(_DATA['pool'], PRETRAINED_ARMS[arm], study, seed=0, out_file=out_file,
                    log=lambda msg: print(f'[{arm}] {msg}', flush=True))


def _cell_job(job: tuple) -> Record:
    arm, budget, seed, lr, study, backbones, split, freeze = job
    train = labeled_subset(_DATA['pool'], budget, seed)
    return run_cell(arm, train, _DATA[split], lr, study, seed, backbones, split, freeze)


def run_study(study: Study, out_dir: Path, work_dir: Path, command: str, log=print) -> dict:
    """Run the study with ``study.workers`` single-threaded processes side by side (on small
    128 px batches two 1-thread processes do about 1.4x the work of one 2-thread process).

    Jobs are queued as soon as what they need exists: the arms without pretraining choose their
    learning rate and train beside the FCMAE pretraining instead of waiting for it."""
    import multiprocessing
    unknown = sorted(set(study.arms) - set(ARMS))
    if unknown or 'scratch' not in study.arms:
        raise ValueError(f'arms {list(study.arms)}: choose from {list(ARMS)} and keep '
                         "'scratch', the baseline every other arm is compared with")
    arms = [arm for arm in ARMS if arm in study.arms]
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    spec = scene(study)
    data = dict(pool=render_split(study.pool, SPLIT_SEEDS['pool'], spec),
                heldout=render_split(study.heldout, SPLIT_SEEDS['heldout'], spec),
                val=render_split(study.val, SPLIT_SEEDS['val'], spec))
    data_file = work_dir / 'splits.pt'
    torch.save({name: (s.images, s.labels) for name, s in data.items()}, data_file)
    del data
    log(f'rendered {study.pool} + {study.heldout} + {study.val} images ({time.time() - t0:.0f} s)')
    backbones = {arm: work_dir / f'{arm}_backbone.pth' for arm in PRETRAINED_ARMS}
    smallest = min(study.budgets)
    best_lr: Dict[str, float] = {}
    selection: List[Record] = []
    val_jobs: list = []  # (job, AsyncResult), in the order the results are reported

    def choose_lr(group: Sequence[str], pending: list) -> None:
        # Each arm's lr is chosen on the held-out split (trained on the seed-0 labels of the
        # smallest budget); the val split never takes part in a choice.
        results = [result.get() for result in pending]
        selection.extend(results)
        for rec in results:
            log(f'select {rec.arm} lr {rec.lr:g}: held-out mIoU {rec.miou:.1f}')
        for arm in group:
            best_lr[arm] = max((r for r in results if r.arm == arm), key=lambda r: r.miou).lr

    def submit_val(group: Sequence[str]) -> None:
        jobs = [(arm, budget, seed, best_lr[arm], study, backbones, 'val', False)
                for budget in study.budgets
                for seed in (study.seeds_smallest if budget == smallest else study.seeds_other)
                for arm in group]
        # Frozen-backbone probes (with the scratch arm's lr): does the backbone's
        # representation matter at this budget?
        jobs += [(arm, smallest, 0, best_lr['scratch'], study, backbones, 'val', True)
                 for arm in group if arm != 'resnet18']
        val_jobs.extend((job, workers.apply_async(_cell_job, (job,))) for job in jobs)

    def submit_selection(group: Sequence[str]) -> list:
        return [workers.apply_async(_cell_job, ((arm, smallest, 0, lr, study, backbones,
                                                 'heldout', False),))
                for arm in group for lr in study.lr_grid]

    # NOTE: spawned, not forked: a forked child of a process that ran torch can deadlock.
    workers = multiprocessing.get_context('spawn').Pool(
        study.workers, initializer=_init_worker, initargs=(str(data_file),))
    try:
        pretrained_arms = [arm for arm in arms if arm in PRETRAINED_ARMS]
        plain_arms = [arm for arm in arms if arm not in PRETRAINED_ARMS]
        pending_pretraining = [workers.apply_async(_pretrain_job, ((arm, study, backbones[arm]),))
                               for arm in pretrained_arms]
        choose_lr(plain_arms, submit_selection(plain_arms))
        submit_val(plain_arms)
        pretraining = dict(zip(pretrained_arms, (r.get() for r in pending_pretraining)))
        log(f'pretrained: {pretraining}')
        if pretrained_arms:
            choose_lr(pretrained_arms, submit_selection(pretrained_arms))
            submit_val(pretrained_arms)

        records: List[Record] = []
        probes: List[Record] = []
        for job, pending in val_jobs:
            rec = pending.get()
            if job[-1]:
                rec.arm = f'frozen_{"random" if rec.arm == "scratch" else rec.arm}'
                probes.append(rec)
            else:
                records.append(rec)
            log(f'{rec.arm} {rec.labeled_images} labels seed {rec.seed} lr {rec.lr:g}: val mIoU '
                f'{rec.miou:.1f} (per class {rec.class_iou}, {rec.seconds:.0f} s)')
            write_results(out_dir, command, study, records, selection, probes, pretraining,
                          best_lr, time.time() - t0)
    finally:
        workers.close()
        workers.join()
    return write_results(out_dir, command, study, records, selection, probes, pretraining,
                         best_lr, time.time() - t0)


def write_results(out_dir: Path, command: str, study: Study, records: Sequence[Record],
                  selection: Sequence[Record], probes: Sequence[Record], pretraining: dict,
                  best_lr: dict, seconds: float) -> dict:
    result = dict(
        command=command,
        records=[dict(arm=r.arm, labeled_images=r.labeled_images, seed=r.seed,
                      miou=round(r.miou, 2)) for r in records],
        details=dict(study=asdict(study), scene=asdict(scene(study)), split_seeds=SPLIT_SEEDS,
                     val_runs=[asdict(r) for r in records],
                     lr_selection=[asdict(r) for r in selection], chosen_lr=best_lr,
                     frozen_backbone_probes=[asdict(r) for r in probes],
                     pretraining=pretraining, seconds=round(seconds)))
    (out_dir / 'results.json').write_text(json.dumps(result, indent=1) + '\n')
    table = markdown_table(records, study.budgets)
    (out_dir / 'results.md').write_text(
        f'Val mIoU (%) of UperNet + each backbone; mean over seeds (± half the spread).\n'
        f'Produced by `{command}` in {seconds / 60:.0f} min.\n\n{table}\n')
    plot(records, study.budgets, out_dir / 'results.png')
    return result


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes: checks the code path in about two minutes')
    parser.add_argument('--out', default='docs/fcmae_study', help='where results go')
    parser.add_argument('--work-dir', default='work_dirs/fcmae_study',
                        help='where pretrained checkpoints go')
    parser.add_argument('--pretrain-epochs', type=int, help='override the study size')
    parser.add_argument('--finetune-iters', type=int, help='override the study size')
    parser.add_argument('--pool', type=int, help='override the number of unlabeled images')
    parser.add_argument('--budgets', type=int, nargs='+', help='override the label budgets')
    parser.add_argument('--seeds-smallest', type=int, nargs='+',
                        help='override the seeds run at the smallest budget')
    parser.add_argument('--lr-grid', type=float, nargs='+',
                        help='override the fine-tuning learning rates tried on held-out')
    parser.add_argument('--texture-prob', type=float, help='scenes: textured fill probability')
    parser.add_argument('--clutter', type=int, help='scenes: most clutter polygons per image')
    parser.add_argument('--radius', type=float, nargs=2, metavar=('MIN', 'MAX'),
                        help='scenes: shape radius range, as fractions of the image side')
    parser.add_argument('--max-objects', type=int, help='scenes: most shapes per image')
    parser.add_argument('--pretrain-blr', type=float,
                        help='FCMAE base learning rate (lr = blr * batch / 256)')
    parser.add_argument('--mask-ratio', type=float, help='FCMAE: fraction of patches masked')
    parser.add_argument('--arms', nargs='+', choices=ARMS,
                        help="override the arms (a subset of the four, with 'scratch')")
    parser.add_argument('--write-val-images', metavar='DIR',
                        help='only write the first --count val-split scenes as PNG files to DIR '
                        '(inputs for tools/feature_collapse.py and tools/visualize_fcmae.py)')
    parser.add_argument('--count', type=int, default=64, help='images for --write-val-images')
    return parser.parse_args(argv)


def write_val_images(out_dir: Path, count: int, study: Optional[Study] = None) -> List[Path]:
    """The first ``count`` scenes of the val split of ``study`` (default: the full study's
    scenes) as ``out_dir/val_NNNN.png``."""
    from PIL import Image
    out_dir.mkdir(parents=True, exist_ok=True)
    split = render_split(count, SPLIT_SEEDS['val'], scene(study or Study()))
    files = []
    for index, image in enumerate(split.images.permute(0, 2, 3, 1).numpy()):
        files.append(out_dir / f'val_{index:04d}.png')
        Image.fromarray(image).save(files[-1])
    return files


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    study = QUICK if args.quick else Study()
    overrides = dict(pretrain_epochs=args.pretrain_epochs, finetune_iters=args.finetune_iters,
                     pool=args.pool, budgets=args.budgets, seeds_smallest=args.seeds_smallest,
                     lr_grid=args.lr_grid, texture_prob=args.texture_prob, clutter=args.clutter,
                     max_objects=args.max_objects, pretrain_blr=args.pretrain_blr,
                     mask_ratio=args.mask_ratio, arms=args.arms)
    if args.radius is not None:
        overrides.update(min_radius_frac=args.radius[0], max_radius_frac=args.radius[1])
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()
                 if v is not None}
    study = replace(study, **overrides)
    if args.write_val_images:
        return dict(files=[str(f) for f in write_val_images(Path(args.write_val_images),
                                                            args.count, study)])
    command = 'python tools/fcmae_study.py ' + ' '.join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    return run_study(study, Path(args.out), Path(args.work_dir), command.strip())


if __name__ == '__main__':
    main()
