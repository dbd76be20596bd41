"""Regenerate the pictures the README and docs show, from the runs that produced them.

    python tools/make_figures.py [--tasks det seg fcmae] [--det-work-dir DIR] [--seg-work-dir DIR]
                                 [--fcmae-checkpoint CKPT] [--out-dir docs/figures]

Each picture comes from a real run of the repo's own configs; nothing is trained here:

- ``det``: the detection demo (``python tools/demo.py``) -> ``det_predictions.png`` (its final
  checkpoint's predictions on the first val images, drawn by ``tools/infer.py``'s predictor and
  visualizer) and ``det_curves.png`` (training loss and val COCO mAP against the iteration, from
  the run's ``vis_data/scalars.json``).
- ``seg``: the segmentation demo (``python tools/demo.py --task seg``) -> ``seg_predictions.png``
  and ``seg_curves.png`` (loss and val mIoU / mAcc / aAcc).
- ``fcmae``: the FCMAE study's pretrained model (``python experiments/fcmae_study/study.py``) ->
  ``fcmae_reconstructions.png``, ``tools/visualize_fcmae.py``'s panels for a few of the study's
  val images, one row each.

A missing run stops the script before anything is drawn, naming the run and the command that
makes it. Every PNG is kept under ``--max-kb`` (colours quantised, then the picture shrunk, only
when needed).
"""
import argparse
import json
import math
import os.path as osp
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tools.demo import TASKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FCMAE_CHECKPOINT = 'work_dirs/fcmae_study/fcmae_backbone_fcmae.pth'
FCMAE_COMMAND = 'python experiments/fcmae_study/study.py'
# The study's reconstructions (experiments/fcmae_study/results/reconstructions) use these
# settings (atto encoder, 128 px images).
FCMAE_ARCH = 'atto'
FCMAE_IMAGE_SIZE = 128
MAX_KB = 300
CHECKPOINT_GLOBS = ('epoch_*.pth', 'iter_*.pth', '*.pth')


class MissingRun(FileNotFoundError):
    """A run the pictures are made from is not there (or not finished)."""


class Run(NamedTuple):
    """What a demo's pictures are made from."""
    task: str  # a key of tools/demo.py's TASKS
    work_dir: Path
    config: Path
    checkpoint: Path


class History(NamedTuple):
    """A run's logged scalars, both indexed by the training iteration."""
    train: List[dict]  # records with a loss, in iteration order
    val: List[Tuple[int, dict]]  # (iteration after which it was evaluated, metrics)


def demo_command(task: str, work_dir: Path) -> str:
    command = 'python tools/demo.py' + (f' --task {task}' if task != 'det' else '')
    if Path(work_dir) != Path(TASKS[task].work_dir):
        command += f' --work-dir {work_dir}'
    return command


def _rel(path: Path) -> str:
    """``path`` relative to the repo root when it lies inside it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def find_checkpoint(work_dir: Path) -> Optional[Path]:
    """The checkpoint named by ``last_checkpoint``, else the newest ``*.pth``; None if none."""
    pointer = work_dir / 'last_checkpoint'
    if pointer.is_file():
        named = Path(pointer.read_text().strip())
        for candidate in (named, work_dir / named.name):  # the work dir may have moved
            if candidate.is_file():
                return candidate
    for pattern in CHECKPOINT_GLOBS:
        found = sorted(work_dir.glob(pattern), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    return None


def find_run(task: str, work_dir: Path) -> Run:
    """The demo run in ``work_dir``: its dumped config and final checkpoint.

    Raises:
        MissingRun: naming the work dir and the command that makes the run.
    """
    work_dir = Path(work_dir)
    command = demo_command(task, work_dir)
    if not work_dir.is_dir():
        raise MissingRun(f'no {task} demo run at {work_dir}; make it with `{command}`')
    checkpoint = find_checkpoint(work_dir)
    if checkpoint is None or not list(work_dir.glob('*/vis_data/scalars.json')):
        raise MissingRun(f'the {task} demo run at {work_dir} has no checkpoint or no logged '
                         f'scalars yet (still running, or stopped early?); finish it with '
                         f'`{command} --resume` or start again with `{command} --overwrite`')
    # mmengine dumps the run's config (with any --cfg-options) into the work dir as <name>.py.
    config = work_dir / TASKS[task].config.name
    return Run(task, work_dir, config if config.is_file() else TASKS[task].config, checkpoint)


def _run_history(scalars: Path) -> History:
    """One run's scalars; an epoch-based run's evaluations are moved from their epoch to the
    iteration that ended that epoch."""
    train, val = [], []
    for line in scalars.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        (train if 'loss' in record else val).append(record)
    train.sort(key=lambda r: r['step'])
    by_epoch = any('epoch' in r for r in train)
    if not by_epoch:  # iteration-based: an evaluation's step is already the iteration
        return History(train, [(int(r['step']), r) for r in val])
    # mmengine logs the last iteration of every epoch, so an epoch ends at its largest step.
    epoch_end: Dict[int, int] = {}
    for record in train:
        epoch_end[record['epoch']] = max(epoch_end.get(record['epoch'], 0), record['step'])
    per_epoch = max(epoch_end.values()) / max(epoch_end) if epoch_end else 0
    return History(train, [(int(epoch_end.get(r['step'], round(r['step'] * per_epoch))), r)
                           for r in val])


def read_history(work_dir: Path) -> History:
    """The training history of a work dir across its runs (``<timestamp>/vis_data/scalars.json``).

    A resumed run continues the earlier ones: what it logged replaces theirs from its first
    iteration on (a run started afresh therefore replaces everything). Runs that logged no
    training (a test) are ignored.
    """
    train: List[dict] = []
    val: List[Tuple[int, dict]] = []
    for scalars in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        run = _run_history(scalars)
        if not run.train:
            continue
        start = run.train[0]['step']
        train = [r for r in train if r['step'] < start] + run.train
        val = [(i, r) for i, r in val if i < start] + run.val
    return History(train, val)


def plot_curves(history: History, metrics: Sequence[str], title: str, out_file: Path,
                metrics_title: str = 'val metrics', max_kb: int = MAX_KB) -> Path:
    """Two panels against the iteration: training losses (total and its parts) and the val
    metrics. Returns ``out_file``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not history.train:
        raise ValueError(f'no training losses to plot for {title}')
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    steps = [r['step'] for r in history.train]
    parts = sorted({k for r in history.train for k in r if 'loss' in k and k != 'loss'})
    for key in parts:
        loss_ax.plot(steps, [r.get(key, math.nan) for r in history.train], lw=0.9, alpha=0.8,
                     label=key)
    loss_ax.plot(steps, [r['loss'] for r in history.train], color='black', lw=1.6, label='loss')
    loss_ax.set_yscale('log')
    loss_ax.set(xlabel='iteration', ylabel='training loss (log scale)')
    loss_ax.legend(fontsize=7, ncol=2)
    loss_ax.grid(alpha=0.3)
    iterations = [i for i, _ in history.val]
    for key in metrics:
        metric_ax.plot(iterations, [r.get(key, math.nan) for _, r in history.val], marker='o',
                       ms=3, label=key.split('/')[-1])
    metric_ax.set(xlabel='iteration', xlim=loss_ax.get_xlim())
    metric_ax.set_title(textwrap.fill(metrics_title, 60), fontsize=8)
    metric_ax.legend(fontsize=7)
    metric_ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    save_png(rgb, out_file, max_kb)
    return out_file


def save_png(rgb: np.ndarray, out_file: Path, max_kb: int = MAX_KB) -> int:
    """Write an RGB uint8 picture as PNG of at most ``max_kb`` KB: as it is if it fits, else
    with its colours quantised to 256, else also shrunk until it fits. Returns the byte size."""
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb)
    image.save(out_file, optimize=True)
    scale = 1.0
    while out_file.stat().st_size > max_kb * 1000:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        smaller = image if scale == 1.0 else image.resize(size, Image.LANCZOS)
        smaller.quantize(256, method=Image.Quantize.MEDIANCUT).save(out_file, optimize=True)
        if size == (1, 1):
            break
        scale *= 0.85
    return out_file.stat().st_size


def tile(panels: Sequence[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Equal-sized RGB panels in a grid on white, row by row."""
    height, width = panels[0].shape[:2]
    rows = math.ceil(len(panels) / columns)
    columns = min(columns, len(panels))
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for index, panel in enumerate(panels):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        grid[top:top + height, left:left + width] = panel
    return grid


def val_images(task: str, config: Path, count: int) -> List[Path]:
    """The first ``count`` images (sorted) of the config's val split."""
    from cnxv2_dense.utils import load_config
    dataset = load_config(str(config)).val_dataloader.dataset
    prefix = dataset.get('data_prefix', {})
    folder = ROOT / dataset.get('data_root', '') / (prefix.get('img') or prefix.get('img_path', ''))
    images = sorted(p for p in folder.glob('*') if p.suffix.lower() in ('.png', '.jpg', '.jpeg'))
    if not images:
        raise MissingRun(f'no val images in {folder}; write the demo data with '
                         f'`python tools/make_demo_data.py --layout {TASKS[task].layout}`')
    return images[:count]


def enlarge(image: np.ndarray, sample, factor: int):
    """The image and its predictions (boxes, instance masks, semantic map) ``factor`` times
    larger, pixels repeated, so that the drawn labels stay legible on small images."""
    from mmengine.structures import PixelData
    image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    if 'pred_instances' in sample:
        instances = sample.pred_instances
        instances.bboxes = instances.bboxes * factor
        if 'masks' in instances:  # (N, H, W)
            instances.masks = instances.masks.repeat_interleave(factor, 1).repeat_interleave(
                factor, 2)
    if 'pred_sem_seg' in sample:  # (1, H, W); PixelData keeps its shape, so make a new one
        data = sample.pred_sem_seg.data.repeat_interleave(factor, -2).repeat_interleave(
            factor, -1)
        sample.pred_sem_seg = PixelData(data=data, metainfo=sample.pred_sem_seg.metainfo)
    return image, sample


def draw_predictions(run: Run, images: Sequence[Path], out_file: Path, columns: int,
                     enlarge_by: int, score_thr: float, device: str,
                     max_kb: int = MAX_KB) -> Path:
    """The run's predictions on ``images``, one grid (``tools/infer.py``'s predictor and
    visualizer)."""
    import mmcv

    import tools.infer as infer
    from cnxv2_dense.utils import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()
    predict, visualizer, scope = infer.build_predictor(str(run.config), str(run.checkpoint),
                                                       device)
    extra = dict(pred_score_thr=score_thr) if scope == 'mmdet' else {}
    panels = []
    # NOTE: mmdet's visualizer jitters each mask's colour with np.random; a fixed seed makes
    # the picture the same every time it is made.
    numpy_state = np.random.get_state()
    np.random.seed(0)
    try:
        for path in images:
            image, result = enlarge(mmcv.imread(str(path), channel_order='rgb'),
                                    predict(str(path)), enlarge_by)
            visualizer.add_datasample(path.stem, image, data_sample=result, draw_gt=False,
                                      show=False, **extra)
            panels.append(visualizer.get_image())
    finally:
        np.random.set_state(numpy_state)
    save_png(tile(panels, columns), out_file, max_kb)
    return out_file


def fcmae_images(checkpoint: Path, images: Optional[Sequence[str]], count: int) -> List[Path]:
    """The given images, else the first ``count`` of the study's ``val_images`` beside the
    checkpoint."""
    if images:
        return [Path(p) for p in images]
    found = sorted((Path(checkpoint).parent / 'val_images').glob('*.png'))[:count]
    if not found:
        raise MissingRun(f'no val_images folder beside {checkpoint}; give images with '
                         f'--fcmae-images')
    return found


def draw_fcmae(checkpoint: Path, images: Sequence[Path], out_file: Path,
               max_kb: int = MAX_KB) -> Path:
    """``tools/visualize_fcmae.py atto CKPT IMAGES --image-size 128`` (the study's settings),
    its per-image panels stacked into one picture."""
    import tools.visualize_fcmae as visualize_fcmae
    with tempfile.TemporaryDirectory() as tmp:
        written = visualize_fcmae.main([FCMAE_ARCH, str(checkpoint), *map(str, images),
                                        '--image-size', str(FCMAE_IMAGE_SIZE), '--out', tmp])
        rows = [np.asarray(Image.open(path).convert('RGB')) for path in written]
    save_png(tile(rows, columns=1), out_file, max_kb)
    return out_file


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tasks', nargs='+', choices=('det', 'seg', 'fcmae'),
                        default=['det', 'seg', 'fcmae'], help='pictures to make (default: all)')
    parser.add_argument('--det-work-dir', type=Path, default=Path(TASKS['det'].work_dir))
    parser.add_argument('--seg-work-dir', type=Path, default=Path(TASKS['seg'].work_dir))
    parser.add_argument('--fcmae-checkpoint', type=Path, default=Path(DEFAULT_FCMAE_CHECKPOINT),
                        help='FCMAE checkpoint with its decoder (default: the study\'s)')
    parser.add_argument('--fcmae-images', nargs='+',
                        help='default: the first --num-fcmae images of val_images/ beside the '
                        'checkpoint')
    parser.add_argument('--num-fcmae', type=int, default=3)
    parser.add_argument('--out-dir', type=Path, default=Path('docs/figures'))
    parser.add_argument('--num-images', type=int, default=6,
                        help='val images in a predictions grid (default: 6)')
    parser.add_argument('--columns', type=int, default=3)
    parser.add_argument('--enlarge', type=int, default=2,
                        help='draw predictions on images this many times larger (default: 2)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection score threshold for drawing (tools/infer.py\'s default)')
    parser.add_argument('--max-kb', type=int, default=MAX_KB)
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> List[Path]:
    args = parse_args(argv)
    work_dirs = dict(det=args.det_work_dir, seg=args.seg_work_dir)
    # Check every source first, so that a missing one stops the script before minutes of work.
    runs, missing = {}, []
    for task in (t for t in ('det', 'seg') if t in args.tasks):
        try:
            run = find_run(task, work_dirs[task])
            runs[task] = run, val_images(task, run.config, args.num_images)
        except MissingRun as err:
            missing.append(str(err))
    fcmae_inputs: List[Path] = []
    if 'fcmae' in args.tasks:
        if not args.fcmae_checkpoint.is_file():
            missing.append(f'no FCMAE checkpoint at {args.fcmae_checkpoint}; make the study\'s '
                           f'with `{FCMAE_COMMAND}` or give one with --fcmae-checkpoint')
        else:
            try:
                fcmae_inputs = fcmae_images(args.fcmae_checkpoint, args.fcmae_images,
                                            args.num_fcmae)
            except MissingRun as err:
                missing.append(str(err))
    if missing:
        raise SystemExit('make_figures: cannot make every picture asked for (--tasks):\n  '
                         + '\n  '.join(missing))

    written = []
    for task, (run, images) in runs.items():
        written.append(draw_predictions(run, images, args.out_dir / f'{task}_predictions.png',
                                        args.columns, args.enlarge, args.score_thr,
                                        args.device, args.max_kb))
        title = f'{_rel(TASKS[task].config)}, run in {_rel(run.work_dir)}'
        written.append(plot_curves(read_history(run.work_dir), TASKS[task].metrics, title,
                                   args.out_dir / f'{task}_curves.png', TASKS[task].title,
                                   args.max_kb))
    if 'fcmae' in args.tasks:
        written.append(draw_fcmae(args.fcmae_checkpoint, fcmae_inputs,
                                  args.out_dir / 'fcmae_reconstructions.png', args.max_kb))
    for path in written:
        print(f'wrote {path} ({path.stat().st_size / 1000:.0f} KB)')
    return written


if __name__ == '__main__':
    main()
