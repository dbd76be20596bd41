"""What does FCMAE pretraining learn at CPU scale, and which lever moves it? One command.

    python experiments/fcmae_study/levers.py          # the full sweep (about 70 min, 2 cores)
    python experiments/fcmae_study/levers.py --quick  # a one-minute smoke run of the same code

The FCMAE study (``study.py`` beside this file) fine-tunes UperNet, which takes 6-13 min per run, so
it can afford a handful of pretrainings. This sweep measures each pretraining with the frozen
linear probe of ``cnxv2_dense.analysis.linear_probe`` instead (seconds per checkpoint) and so
covers the levers the study could not:

* pretraining length (``epochs``), learning rate, mask ratio, normalised-pixel loss, GRN, the
  scenes (textured shapes with clutter, the study's, or large flat-coloured shapes, where masked
  patches cut through an outline far more often) and, with ``--variants grid_8x8``, the mask
  grid (the scenes upsampled 2x, so the 32 px patches form 8 x 8 instead of 4 x 4; 4x the cost);
  ``combined`` / ``combined_long`` (opt-in too) put the three best levers of the default sweep
  together at 4x / 8x the base length; ``pico`` / ``combined_pico`` (opt-in) change the
  encoder's size (ConvNeXt V2-pico, 2.5x atto's compute), with baselines of that size;
* every pretraining starts from the same seed and data and differs from ``base`` in one lever;
* each is probed against the same architecture at random initialisation on the same scenes;
  the difference (``gain``) is what the pretraining put into the frozen features;
* the variant with the largest gain on the held-out split (among those at the study's image
  size) is then fine-tuned as in the study (UperNet, 100 labels or the ``--finetune-budgets``,
  seeds 0 and 1, the learning rates the study chose on held-out; ``--layer-decays`` tries
  several stage-wise layer decays on held-out first, at the smallest budget; with
  ``--decay-scratch`` scratch chooses one too, so a slowed or all-but-frozen backbone is tried
  for both inits; ``--frozen-iters`` tries training the heads alone on a frozen backbone
  for the first iterations, LP-FT, for every init; ``--choose-per-budget`` makes every held-out
  choice again at each budget instead of keeping the smallest budget's) beside scratch, and both
  are reported on val;
* ``--reuse-pretrained`` keeps a checkpoint in WORK_DIR whose recorded settings
  (``<name>_backbone.json``) equal this run's, so a second command fine-tunes what a first one
  pretrained without pretraining it again.

Writes ``OUT/results.json`` (the command, probe records, fine-tuning records, per-class IoU) and
``OUT/results.md``, and keeps the checkpoints in ``WORK_DIR``.
"""
import argparse
import json
import os
import sys
import time
import os.path as osp
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # the checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cnxv2_dense.analysis import LinearProbe, dense_features  # noqa: E402
from cnxv2_dense.models import ConvNeXtV2  # noqa: E402
from cnxv2_dense.utils.atomic_file import atomic_output  # noqa: E402
from experiments.fcmae_study import training  # noqa: E402
from experiments.fcmae_study.common import (FinetuneJob, choose_on_heldout,  # noqa: E402
                                            command_line, run_finetune_job, save_splits,
                                            worker_pool, worker_splits, write_results)
from experiments.fcmae_study.training import (CLASS_WEIGHT, NUM_CLASSES, SPLIT_SEEDS,  # noqa: E402
                                              Record, Split, Study, normalise, render_split,
                                              scene)

# Scenes the sweep renders. 'textured' is the study's; 'large_flat' has flat-coloured shapes
# (no textures) with twice the radius, so most shapes span several 32 px mask patches.
SCENES = dict(textured={}, large_flat=dict(texture_prob=0., min_radius_frac=0.15,
                                           max_radius_frac=0.35, max_objects=3))


@dataclass
class Variant:
    name: str
    overrides: dict = field(default_factory=dict)  # on the sweep's Study
    use_grn: bool = True
    scene: str = 'textured'
    # Pretrain and probe on the scenes upsampled this many times: 2 gives the 32 px mask
    # patches an 8 x 8 grid over the same content (each patch covers 16 px of the scene).
    image_scale: int = 1


VARIANTS: List[Variant] = [
    Variant('base'),
    Variant('long', dict(pretrain_epochs=24)),
    Variant('blr_x4', dict(pretrain_blr=6e-3)),
    Variant('mask_0.4', dict(mask_ratio=0.4)),
    Variant('mask_0.75', dict(mask_ratio=0.75)),
    Variant('no_norm_pix', dict(norm_pix_loss=False)),
    Variant('no_grn', use_grn=False),
    Variant('large_flat', scene='large_flat'),
    Variant('grid_8x8', image_scale=2),
    # The three levers with the largest held-out probe gains in the default sweep
    # (results/probe), together: 4x the length, 4x the lr, mask ratio 0.75.
    Variant('combined', dict(pretrain_epochs=24, pretrain_blr=6e-3, mask_ratio=0.75)),
    # 'combined' at twice the length (2976 steps): does the fine-tuning gain grow with it?
    Variant('combined_long', dict(pretrain_epochs=48, pretrain_blr=6e-3, mask_ratio=0.75)),
    # The encoder's size: V2-pico (2.5x atto's width-squared compute), with the base recipe or
    # the combined levers. Its baselines (random init, scratch) are pico too.
    Variant('pico', dict(arch='pico')),
    Variant('combined_pico', dict(pretrain_epochs=24, pretrain_blr=6e-3, mask_ratio=0.75,
                                  arch='pico')),
]
# Left to an explicit --variants: 2.5x-8x the cost, or chosen from the default sweep's results.
OPT_IN = ('grid_8x8', 'combined', 'combined_long', 'pico', 'combined_pico')


@dataclass
class Sweep:
    pool: int = 4000  # unlabeled images per scene (the first ``probe_train`` are also labeled)
    probe_train: int = 500
    heldout: int = 200
    val: int = 300
    pretrain_epochs: int = 6  # 372 steps of 64 on 4000 images; 'long' has 4x
    probe_steps: int = 300
    # Label budgets of the fine-tuning (drawn from the pool, as in the study); the held-out
    # choices are made at the smallest (at each with ``choose_per_budget``).
    finetune_budgets: Sequence[int] = (100,)
    finetune_seeds: Sequence[int] = (0, 1)
    finetune_iters: int = 1600
    # Chosen on the held-out split by the study's lever run (results/levers).
    scratch_lr: float = 5e-4
    fcmae_lr: float = 2e-3
    # Stage-wise layer decay of the pretrained backbone; with several, each is tried on the
    # held-out split (seed 0) and the best one is used for the val runs.
    layer_decays: Sequence[float] = (0.9,)
    # Scratch, too, chooses its layer decay from ``layer_decays`` on held-out (otherwise its
    # backbone trains at the head's lr): whether a slowed or all-but-frozen backbone helps
    # scratch as much as the pretrained one at few labels.
    decay_scratch: bool = False
    # Iterations of head-only training on a frozen backbone before the whole model trains
    # (LP-FT); with several, every init chooses on held-out (seed 0), after its lr and decay.
    frozen_iters: Sequence[int] = (0,)
    # Learning rates tried on the held-out split for every init (empty: the two above; one
    # value: every init takes it, no held-out runs).
    lr_grid: Sequence[float] = ()
    # Make the held-out choices (lr, layer decay, frozen iters) at every budget, each budget's val
    # runs using its own; otherwise they are made at the smallest budget and kept at the others.
    choose_per_budget: bool = False
    # Variants fine-tuned beside scratch (empty: the one with the largest held-out probe gain).
    finetune_variants: Sequence[str] = ()
    finetune: bool = True
    # Keep a pretrained checkpoint already in WORK_DIR when its recorded settings equal this
    # run's (``<name>_backbone.json``, written beside every checkpoint), instead of pretraining it
    # again: a rerun after a kill, or a second command that fine-tunes what a first one made.
    reuse_pretrained: bool = False
    workers: int = 2
    variants: Sequence[str] = tuple(v.name for v in VARIANTS if v.name not in OPT_IN)


QUICK = Sweep(pool=64, probe_train=16, heldout=8, val=8, pretrain_epochs=1, probe_steps=5,
              finetune_budgets=(8,), finetune_seeds=(0,), finetune_iters=2,
              variants=('base', 'no_grn'))


def arch_of(variant: Variant) -> str:
    return variant.overrides.get('arch', Study.arch)


def study_for(sweep: Sweep, variant: Variant, quick: bool) -> Study:
    base = training.QUICK if quick else Study()
    study = replace(base, pool=sweep.pool, pretrain_epochs=sweep.pretrain_epochs,
                    finetune_iters=sweep.finetune_iters, **SCENES[variant.scene])
    return replace(study, **variant.overrides)


def probe_backbone(backbone_file: Optional[Path], use_grn: bool, data: Dict[str, Split],
                   sweep: Sweep, arch: str = 'atto') -> Dict[str, dict]:
    """Held-out and val probe scores of an ``arch`` backbone (random init when no file)."""
    torch.manual_seed(0)
    init_cfg = None if backbone_file is None else dict(type='Pretrained',
                                                       checkpoint=str(backbone_file))
    backbone = ConvNeXtV2(arch=arch, out_indices=(0, 1, 2, 3), use_grn=use_grn,
                          layer_scale_init_value=0. if use_grn else 1e-6, init_cfg=init_cfg)
    backbone.init_weights()
    train = data['pool']
    probe = LinearProbe(NUM_CLASSES, CLASS_WEIGHT, steps=sweep.probe_steps).fit(
        dense_features(backbone, normalise(train.images[:sweep.probe_train])),
        train.labels[:sweep.probe_train])
    return {split: asdict(probe.score(dense_features(backbone, normalise(data[split].images)),
                                      data[split].labels))
            for split in ('heldout', 'val')}


def upsample(split: Split, factor: int) -> Split:
    """``split`` at ``factor`` times the size (images bilinear, labels nearest)."""
    if factor == 1:
        return split
    images = F.interpolate(split.images.float(), scale_factor=factor, mode='bilinear',
                           align_corners=False).round().clamp(0, 255).to(torch.uint8)
    labels = F.interpolate(split.labels[:, None].float(), scale_factor=factor,
                           mode='nearest')[:, 0].to(split.labels.dtype)
    return Split(images, labels)


# The Study fields that decide the pretrained weights (the fine-tuning ones do not).
PRETRAINING_FIELDS = ('arch', 'pool', 'pretrain_epochs', 'pretrain_batch', 'pretrain_blr',
                      'mask_ratio', 'norm_pix_loss', 'texture_prob', 'clutter', 'min_radius_frac',
                      'max_radius_frac', 'max_objects')


def pretraining_settings(study: Study, scene_name: str, use_grn: bool, image_scale: int) -> dict:
    """Everything that decides a variant's pretrained weights (the code aside), as JSON."""
    fields = {k: getattr(study, k) for k in PRETRAINING_FIELDS}
    return json.loads(json.dumps(dict(study=fields, scene=scene_name, use_grn=use_grn,
                                      image_scale=image_scale, pool_seed=SPLIT_SEEDS['pool'],
                                      pretrain_seed=0)))


def reusable_pretraining(backbone_file: Path, settings: dict) -> Optional[dict]:
    """The recorded pretraining of ``backbone_file`` when it was made with ``settings``."""
    record_file = backbone_file.with_suffix('.json')
    if not (backbone_file.is_file() and record_file.is_file()):
        return None
    recorded = json.loads(record_file.read_text())
    # Records written before the arch was a lever lack it; the tool pretrained only atto then.
    recorded.get('settings', {}).get('study', {}).setdefault('arch', 'atto')
    return recorded['pretraining'] if recorded.get('settings') == settings else None


@dataclass
class ProbeJob:
    """Pretrain variant ``name`` with ``study`` (None: a random init, nothing to pretrain), then
    probe its encoder on ``scene``'s splits upsampled ``image_scale`` times."""
    name: str
    scene: str
    use_grn: bool
    image_scale: int
    arch: str
    study: Optional[Study]
    sweep: Sweep
    work_dir: str


def _probe_job(job: ProbeJob) -> dict:
    name, scene_name, use_grn, image_scale = job.name, job.scene, job.use_grn, job.image_scale
    study, sweep = job.study, job.sweep
    data = {k: upsample(v, image_scale) for k, v in worker_splits(scene_name).items()}
    start = time.time()
    record = dict(name=name, scene=scene_name, use_grn=use_grn, image_scale=image_scale,
                  arch=job.arch)
    backbone_file = None
    if study is not None:  # pretrain first (or reuse a checkpoint made with the same settings)
        backbone_file = Path(job.work_dir) / f'{name}_backbone.pth'
        settings = pretraining_settings(study, scene_name, use_grn, image_scale)
        reused = sweep.reuse_pretrained and reusable_pretraining(backbone_file, settings)
        if reused:
            print(f'[{name}] reusing {backbone_file} (same settings)', flush=True)
            record['pretraining'] = reused
        else:
            # The old record goes before the checkpoint is replaced and the new one comes after
            # it is complete, so a kill at any point leaves a checkpoint without a record (which
            # is pretrained again), never a checkpoint beside another one's record.
            record_file = backbone_file.with_suffix('.json')
            record_file.unlink(missing_ok=True)
            record['pretraining'] = training.pretrain(
                data['pool'], use_grn, study, seed=0, out_file=backbone_file,
                log=lambda msg: print(f'[{name}] {msg}', flush=True))
            with atomic_output(record_file) as tmp:
                tmp.write_text(json.dumps(dict(settings=settings,
                                               pretraining=record['pretraining']), indent=1) + '\n')
        record['reused_pretraining'] = bool(reused)
        record['study'] = asdict(study)
    record.update(probe_backbone(backbone_file, use_grn, data, sweep, job.arch))
    record['seconds'] = round(time.time() - start, 1)
    return record


class Init(NamedTuple):
    """One init of the fine-tuning: scratch or a pretrained variant."""
    name: str  # 'scratch' or the variant's name
    arm: str  # its ``training.ARMS`` entry
    backbone: Optional[str]  # the pretrained backbone file (None for scratch)


def finetune_job(sweep: Sweep, init: Init, scene_name: str, arch: str, split: str, budget: int,
                 seed: int, lr: float, layer_decay: float, frozen_iters: int) -> FinetuneJob:
    """The fine-tuning run of ``init``: the full study's fine-tuning settings with the sweep's
    iterations and this run's ``arch``, layer decay (of scratch's backbone too, for scratch) and
    head-only iterations."""
    study = replace(Study(), arch=arch, finetune_iters=sweep.finetune_iters,
                    layer_decay=layer_decay, frozen_backbone_iters=frozen_iters,
                    scratch_layer_decay=layer_decay if init.arm == 'scratch' else 1.0)
    return FinetuneJob(init.arm, budget, seed, lr, split, study, scene_name, init.backbone,
                       variant=init.name)


def finetune_record(job: FinetuneJob, rec: Record) -> dict:
    """The results.json record of ``job``'s run."""
    return dict(asdict(rec), scene=job.scene, arch=job.study.arch, backbone=job.backbone,
                layer_decay=job.study.layer_decay, frozen_iters=job.study.frozen_backbone_iters,
                variant=job.variant)


def random_name(scene_name: str, use_grn: bool, image_scale: int = 1, arch: str = 'atto') -> str:
    return (f'random_{scene_name}' + ('' if use_grn else '_no_grn')
            + ('' if image_scale == 1 else f'_x{image_scale}')
            + ('' if arch == 'atto' else f'_{arch}'))


def run_sweep(sweep: Sweep, out_dir: Path, work_dir: Path, command: str, quick: bool = False,
              log=print) -> dict:
    variants = [v for v in VARIANTS if v.name in sweep.variants]
    unknown = sorted(set(sweep.variants) - {v.name for v in VARIANTS})
    if unknown:
        raise ValueError(f'unknown variants {unknown}: choose from {[v.name for v in VARIANTS]}')
    finetunable = {v.name: v for v in variants if v.image_scale == 1}
    if sweep.finetune_variants:
        missing = sorted(set(sweep.finetune_variants) - set(finetunable))
        if missing:
            raise ValueError(f'--finetune-variants {missing} are not among the variants this run '
                             f'pretrains at the study\'s image size ({sorted(finetunable)}): add '
                             f'them to --variants')
        if len({(finetunable[n].scene, arch_of(finetunable[n]))
                for n in sweep.finetune_variants}) > 1:
            raise ValueError('--finetune-variants must share one scene and one arch (scratch is '
                             'their baseline)')
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    scenes = sorted({v.scene for v in variants})
    splits = {}
    for scene_name in scenes:
        spec = scene(replace(Study(), **SCENES[scene_name]))
        splits[scene_name] = {name: render_split(count, SPLIT_SEEDS[name], spec)
                              for name, count in (('pool', sweep.pool), ('heldout', sweep.heldout),
                                                  ('val', sweep.val))}
    data_file = save_splits(splits, work_dir / 'splits.pt')
    del splits
    log(f'rendered scenes {scenes} ({time.time() - t0:.0f} s)')
    # Longest pretraining first, so the two workers finish together.
    jobs = sorted((ProbeJob(v.name, v.scene, v.use_grn, v.image_scale, arch_of(v),
                            study_for(sweep, v, quick), sweep, str(work_dir)) for v in variants),
                  key=lambda job: -job.study.pretrain_epochs * job.image_scale ** 2
                  * (2 - job.study.mask_ratio))
    randoms = sorted({(v.scene, v.use_grn, v.image_scale, arch_of(v)) for v in variants})
    jobs += [ProbeJob(random_name(*r), *r, None, sweep, str(work_dir)) for r in randoms]
    probes: List[dict] = []
    finetunes: List[dict] = []

    def save() -> dict:
        return write_sweep_results(out_dir, command, sweep, probes, finetunes, time.time() - t0)

    with worker_pool(data_file, sweep.workers,
                     threads=max(1, (os.cpu_count() or 1) // sweep.workers)) as workers:
        for record in workers.imap_unordered(_probe_job, jobs):
            probes.append(record)
            log(f"probe {record['name']}: held-out {record['heldout']['miou']:.1f}, "
                f"val {record['val']['miou']:.1f} mIoU ({record['seconds']:.0f} s)")
            save()
        by_name = {r['name']: r for r in probes}
        for record in probes:
            if record['name'] in {v.name for v in variants}:
                base = by_name[random_name(record['scene'], record['use_grn'],
                                           record['image_scale'], record['arch'])]
                record['gain'] = {split: record[split]['miou'] - base[split]['miou']
                                  for split in ('heldout', 'val')}
        save()
        # Fine-tuning runs at the study's image size, so upsampled variants take no part.
        candidates = [by_name[name] for name in finetunable]
        if sweep.finetune and candidates:
            finetune_variants(workers, sweep, candidates, work_dir, finetunes, save, log)
    return save()


def finetune_variants(workers, sweep: Sweep, candidates: Sequence[dict], work_dir: Path,
                      finetunes: List[dict], save: Callable[[], object], log=print) -> None:
    """Fine-tune beside scratch the variants of ``sweep.finetune_variants`` (by default the
    candidate with the largest held-out probe gain). On the held-out split at the smallest budget
    (seed 0; at every budget with ``sweep.choose_per_budget``), each init's learning rate is
    chosen from ``sweep.lr_grid`` (when given) and each pretrained one's layer decay from
    ``sweep.layer_decays`` (when several; scratch's too with ``sweep.decay_scratch``, else it has
    none), then each init's head-only iterations from ``sweep.frozen_iters`` (when several); then
    every seed of that budget runs on val with those choices."""
    if sweep.finetune_variants:
        chosen = [r for r in candidates if r['name'] in sweep.finetune_variants]
    else:
        chosen = [max(candidates, key=lambda r: r['gain']['heldout'])]
        log(f"largest held-out probe gain: {chosen[0]['name']} "
            f"({chosen[0]['gain']['heldout']:+.1f})")
    scene_name, arch = chosen[0]['scene'], chosen[0]['arch']
    # Every init; scratch (of the same arch) is the baseline.
    inits = [Init('scratch', 'scratch', None)] + [
        Init(r['name'], 'fcmae' if r['use_grn'] else 'fcmae_no_grn',
             str(work_dir / f"{r['name']}_backbone.pth")) for r in chosen]
    decayed = inits if sweep.decay_scratch else inits[1:]
    done: Dict[tuple, dict] = {}

    def job(init: Init, split: str, budget: int, seed: int, lr: float, layer_decay: float,
            frozen_iters: int) -> FinetuneJob:
        return finetune_job(sweep, init, scene_name, arch, split, budget, seed, lr, layer_decay,
                            frozen_iters)

    def key(j: FinetuneJob) -> tuple:
        return (j.variant, j.split, j.budget, j.seed, j.lr, j.study.layer_decay,
                j.study.frozen_backbone_iters)

    def run(jobs: Sequence[FinetuneJob]) -> List[dict]:
        """The records of ``jobs``, running those not run before."""
        todo = [j for j in dict((key(j), j) for j in jobs).values() if key(j) not in done]
        for j, rec in zip(todo, workers.imap(run_finetune_job, todo)):
            record = finetune_record(j, rec)
            finetunes.append(record)
            done[key(j)] = record
            log(f"fine-tune {record['variant']} (lr {record['lr']:g}, layer decay "
                f"{record['layer_decay']}, {record['frozen_iters']} frozen iters) "
                f"{record['labeled_images']} labels seed "
                f"{record['seed']}: {record['split']} mIoU {record['miou']:.1f} "
                f"({record['seconds']:.0f} s)")
            save()
        return [done[key(j)] for j in jobs]

    def choose_at(budget: int) -> tuple:
        """Each init's (lr, layer decay, frozen iters), chosen on held-out (seed 0) with
        ``budget`` labels where the sweep gives several values."""
        lr = {i.name: sweep.scratch_lr if i.arm == 'scratch' else sweep.fcmae_lr for i in inits}
        decay = {i.name: sweep.layer_decays[0] if i in decayed else 1.0 for i in inits}
        frozen = {i.name: sweep.frozen_iters[0] for i in inits}
        if len(sweep.lr_grid) == 1:  # nothing to choose: every init takes it
            lr = dict.fromkeys(lr, sweep.lr_grid[0])
        elif sweep.lr_grid:
            lr.update(choose_on_heldout(run([
                job(i, 'heldout', budget, 0, x, decay[i.name], frozen[i.name])
                for i in inits for x in sweep.lr_grid]), 'lr', by='variant'))
        if len(sweep.layer_decays) > 1:
            decay.update(choose_on_heldout(run([
                job(i, 'heldout', budget, 0, lr[i.name], d, frozen[i.name])
                for i in decayed for d in sweep.layer_decays]), 'layer_decay', by='variant'))
        if len(sweep.frozen_iters) > 1:
            frozen.update(choose_on_heldout(run([
                job(i, 'heldout', budget, 0, lr[i.name], decay[i.name], n)
                for i in inits for n in sweep.frozen_iters]), 'frozen_iters', by='variant'))
        return lr, decay, frozen

    def run_val(budgets: Sequence[int], lr: dict, decay: dict, frozen: dict) -> None:
        # Smallest budgets first: they are the ones the comparison is about.
        run([job(i, 'val', budget, seed, lr[i.name], decay[i.name], frozen[i.name])
             for budget in sorted(budgets) for seed in sweep.finetune_seeds for i in inits])

    smallest = min(sweep.finetune_budgets)
    if sweep.choose_per_budget:
        for budget in sorted(sweep.finetune_budgets):
            run_val([budget], *choose_at(budget))
    else:
        run_val(sweep.finetune_budgets, *choose_at(smallest))


def markdown(probes: Sequence[dict], finetunes: Sequence[dict]) -> str:
    lines = ['| variant | arch | scenes | GRN | pretraining steps | last loss | held-out probe | '
             'val probe | val gain over random |',
             '|---|---|---|---|---:|---:|---:|---:|---:|']
    for r in sorted(probes, key=lambda r: (r['name'].startswith('random'), r['name'])):
        pre = r.get('pretraining')
        steps, loss = (pre['steps'], f"{pre['last_loss']:.3f}") if pre else (0, '')
        gain = r.get('gain', {}).get('val')
        lines.append(f"| {r['name']} | {r.get('arch', 'atto')} | {r['scene']} | "
                     f"{'yes' if r['use_grn'] else 'no'} | {steps} | {loss} | "
                     f"{r['heldout']['miou']:.1f} | {r['val']['miou']:.1f} | "
                     + ('' if gain is None else f'{gain:+.1f}') + ' |')
    if finetunes:
        lines += ['', 'Fine-tuned (UperNet, mIoU, per class: background, circle, square, '
                  'triangle):', '',
                  '| init | lr | layer decay | frozen iters | labels | seed | split | mIoU | '
                  'per class |',
                  '|---|---:|---:|---:|---:|---:|---|---:|---|']
        for r in sorted(finetunes, key=lambda r: (r['split'], r['labeled_images'], r['variant'],
                                                  r['seed'])):
            lines.append(f"| {r['variant']} | {r['lr']:g} | {r['layer_decay']} | "
                         f"{r.get('frozen_iters', 0)} | {r['labeled_images']} | {r['seed']} | "
                         f"{r['split']} | "
                         f"{r['miou']:.1f} | {r['class_iou']} |")
    return '\n'.join(lines)


def write_sweep_results(out_dir: Path, command: str, sweep: Sweep, probes: Sequence[dict],
                        finetunes: Sequence[dict], seconds: float) -> dict:
    result = dict(command=command, sweep=asdict(sweep), scenes=SCENES,
                  variants=[asdict(v) for v in VARIANTS if v.name in sweep.variants],
                  probes=list(probes), finetunes=list(finetunes), seconds=round(seconds))
    return write_results(out_dir, result, 'Frozen linear probe (mIoU %, background + 3 shapes) of '
                         'ConvNeXt V2 encoders FCMAE-pretrained with one lever changed, and of '
                         'random inits.', markdown(probes, finetunes), seconds)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='tiny sizes, about a minute')
    parser.add_argument('--out', default='experiments/fcmae_study/results/probe',
                        help='where results go')
    parser.add_argument('--work-dir', default='work_dirs/fcmae_levers_probe',
                        help='where pretrained checkpoints go')
    parser.add_argument('--variants', nargs='+', choices=[v.name for v in VARIANTS],
                        help=f'the variants to run (default: all but {OPT_IN})')
    parser.add_argument('--layer-decays', type=float, nargs='+',
                        help='stage-wise layer decays tried on held-out for the fine-tuning')
    parser.add_argument('--finetune-iters', type=int, help='fine-tuning iterations')
    parser.add_argument('--finetune-variants', nargs='+', choices=[v.name for v in VARIANTS],
                        help='fine-tune these variants beside scratch (default: the one with '
                        'the largest held-out probe gain)')
    parser.add_argument('--lr-grid', type=float, nargs='+',
                        help='learning rates tried on held-out for every init; one value is '
                        'used by every init without held-out runs (default: 5e-4 for scratch, '
                        '2e-3 for FCMAE, as the study chose)')
    parser.add_argument('--finetune-seeds', type=int, nargs='+',
                        help='seeds of the val fine-tuning runs (default 0 1)')
    parser.add_argument('--finetune-budgets', type=int, nargs='+',
                        help='label budgets of the fine-tuning (default 100)')
    parser.add_argument('--choose-per-budget', action='store_true',
                        help='make the held-out choices (lr, layer decay, frozen iters) at every '
                        'budget (default: at the smallest, kept at the others)')
    parser.add_argument('--decay-scratch', action='store_true',
                        help='scratch chooses its layer decay from --layer-decays on held-out too '
                        '(default: none, its backbone trains at the head\'s lr)')
    parser.add_argument('--frozen-iters', type=int, nargs='+',
                        help='iterations of head-only training on a frozen backbone before the '
                        'whole model trains (LP-FT); several are tried on held-out for every '
                        'init (default 0)')
    parser.add_argument('--reuse-pretrained', action='store_true',
                        help='keep checkpoints in WORK_DIR pretrained with the same settings')
    parser.add_argument('--no-finetune', action='store_true', help='probes only')
    parser.add_argument('--workers', type=int,
                        help='processes side by side, the CPU cores shared among them '
                        '(default 2; 1 suits a single variant)')
    args = parser.parse_args(argv)
    if args.frozen_iters and min(args.frozen_iters) < 0:
        parser.error(f'--frozen-iters must be >= 0 (0: the backbone trains from the first '
                     f'iteration), got {args.frozen_iters}')
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    sweep = QUICK if args.quick else Sweep()
    overrides = dict(variants=args.variants and tuple(args.variants),
                     layer_decays=args.layer_decays and tuple(args.layer_decays),
                     finetune_iters=args.finetune_iters, workers=args.workers,
                     finetune_budgets=args.finetune_budgets and tuple(args.finetune_budgets),
                     finetune_seeds=args.finetune_seeds and tuple(args.finetune_seeds),
                     finetune_variants=args.finetune_variants and tuple(args.finetune_variants),
                     lr_grid=args.lr_grid and tuple(args.lr_grid),
                     frozen_iters=args.frozen_iters and tuple(args.frozen_iters))
    sweep = replace(sweep, finetune=not args.no_finetune, reuse_pretrained=args.reuse_pretrained,
                    decay_scratch=args.decay_scratch, choose_per_budget=args.choose_per_budget,
                    **{k: v for k, v in overrides.items() if v is not None})
    return run_sweep(sweep, Path(args.out), Path(args.work_dir), command_line(__file__, argv),
                     quick=args.quick)


if __name__ == '__main__':
    main()
