"""Does in-domain FCMAE pretraining pay off? The whole comparison in one command.

    python experiments/fcmae_study/study.py           # the full study (its size: ``Study``)
    python experiments/fcmae_study/study.py --quick   # a two-minute smoke run of the same code

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

It trains on in-memory tensors (no image files, no data loader; ``training.py`` says what that
loop re-implements of ``tools/train.py`` and why), in ``Study.workers`` processes side by side,
so that the full study fits about an hour and a half on 2 CPU cores.
"""
import argparse
import os.path as osp
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # the checkout

import numpy as np  # noqa: E402

from experiments.fcmae_study.common import (FinetuneJob, choose_on_heldout,  # noqa: E402
                                            command_line, run_finetune_job, save_splits,
                                            worker_pool, worker_splits, write_results)
from experiments.fcmae_study.training import (ARMS, PRETRAINED_ARMS, QUICK,  # noqa: E402
                                              SPLIT_SEEDS, Record, Study, pretrain,
                                              render_split, scene)

SCENE = 'study'  # the name of the study's splits in the workers (``common.save_splits``)


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


def _pretrain_job(arm: str, study: Study, out_file: Path) -> Dict[str, float]:
    return pretrain(worker_splits(SCENE)['pool'], PRETRAINED_ARMS[arm], study, seed=0,
                    out_file=out_file, log=lambda msg: print(f'[{arm}] {msg}', flush=True))


def run_study(study: Study, out_dir: Path, work_dir: Path, command: str, log=print) -> dict:
    """Run the study with ``study.workers`` single-threaded processes side by side (on small
    128 px batches two 1-thread processes do about 1.4x the work of one 2-thread process).

    Jobs are queued as soon as what they need exists: the arms without pretraining choose their
    learning rate and train beside the FCMAE pretraining instead of waiting for it."""
    unknown = sorted(set(study.arms) - set(ARMS))
    if unknown or 'scratch' not in study.arms:
        raise ValueError(f'arms {list(study.arms)}: choose from {list(ARMS)} and keep '
                         "'scratch', the baseline every other arm is compared with")
    arms = [arm for arm in ARMS if arm in study.arms]
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    spec = scene(study)
    data_file = save_splits({SCENE: dict(
        pool=render_split(study.pool, SPLIT_SEEDS['pool'], spec),
        heldout=render_split(study.heldout, SPLIT_SEEDS['heldout'], spec),
        val=render_split(study.val, SPLIT_SEEDS['val'], spec))}, work_dir / 'splits.pt')
    log(f'rendered {study.pool} + {study.heldout} + {study.val} images ({time.time() - t0:.0f} s)')
    backbones = {arm: work_dir / f'{arm}_backbone.pth' for arm in PRETRAINED_ARMS}
    smallest = min(study.budgets)
    best_lr: Dict[str, float] = {}
    selection: List[Record] = []
    val_jobs: list = []  # (job, AsyncResult), in the order the results are reported

    def job(arm: str, budget: int, seed: int, lr: float, split: str,
            freeze_backbone: bool = False) -> FinetuneJob:
        backbone = backbones.get(arm)
        return FinetuneJob(arm, budget, seed, lr, split, study, SCENE,
                           None if backbone is None else str(backbone), freeze_backbone)

    def choose_lr(pending: list) -> None:
        # Each arm's lr is chosen on the held-out split (trained on the seed-0 labels of the
        # smallest budget); the val split never takes part in a choice.
        results = [result.get() for result in pending]
        selection.extend(results)
        for rec in results:
            log(f'select {rec.arm} lr {rec.lr:g}: held-out mIoU {rec.miou:.1f}')
        best_lr.update(choose_on_heldout([asdict(r) for r in results], 'lr', by='arm'))

    def submit_val(group: Sequence[str]) -> None:
        jobs = [job(arm, budget, seed, best_lr[arm], 'val')
                for budget in study.budgets
                for seed in (study.seeds_smallest if budget == smallest else study.seeds_other)
                for arm in group]
        # Frozen-backbone probes (with the scratch arm's lr): does the backbone's
        # representation matter at this budget?
        jobs += [job(arm, smallest, 0, best_lr['scratch'], 'val', freeze_backbone=True)
                 for arm in group if arm != 'resnet18']
        val_jobs.extend((j, workers.apply_async(run_finetune_job, (j,))) for j in jobs)

    def submit_selection(group: Sequence[str]) -> list:
        return [workers.apply_async(run_finetune_job, (job(arm, smallest, 0, lr, 'heldout'),))
                for arm in group for lr in study.lr_grid]

    def save() -> dict:
        return write_study_results(out_dir, command, study, records, selection, probes,
                                   pretraining, best_lr, time.time() - t0)

    records: List[Record] = []
    probes: List[Record] = []
    with worker_pool(data_file, study.workers, threads=1) as workers:
        pretrained_arms = [arm for arm in arms if arm in PRETRAINED_ARMS]
        plain_arms = [arm for arm in arms if arm not in PRETRAINED_ARMS]
        pending_pretraining = [workers.apply_async(_pretrain_job, (arm, study, backbones[arm]))
                               for arm in pretrained_arms]
        choose_lr(submit_selection(plain_arms))
        submit_val(plain_arms)
        pretraining = dict(zip(pretrained_arms, (r.get() for r in pending_pretraining)))
        log(f'pretrained: {pretraining}')
        if pretrained_arms:
            choose_lr(submit_selection(pretrained_arms))
            submit_val(pretrained_arms)

        for j, pending in val_jobs:
            rec = pending.get()
            if j.freeze_backbone:
                rec.arm = f'frozen_{"random" if rec.arm == "scratch" else rec.arm}'
                probes.append(rec)
            else:
                records.append(rec)
            log(f'{rec.arm} {rec.labeled_images} labels seed {rec.seed} lr {rec.lr:g}: val mIoU '
                f'{rec.miou:.1f} (per class {rec.class_iou}, {rec.seconds:.0f} s)')
            save()
    return save()


def write_study_results(out_dir: Path, command: str, study: Study, records: Sequence[Record],
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
    write_results(out_dir, result, 'Val mIoU (%) of UperNet + each backbone; mean over seeds '
                  '(± half the spread).', markdown_table(records, study.budgets), seconds)
    plot(records, study.budgets, out_dir / 'results.png')
    return result


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes: checks the code path in about two minutes')
    parser.add_argument('--out', default='experiments/fcmae_study/results',
                        help='where results go')
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
    return run_study(study, Path(args.out), Path(args.work_dir), command_line(__file__, argv))


if __name__ == '__main__':
    main()
