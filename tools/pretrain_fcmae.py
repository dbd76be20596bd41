"""FCMAE-pretrain a ConvNeXt V2 backbone on a folder of your own images, then export it.

    python tools/pretrain_fcmae.py IMAGE_FOLDER --arch atto --image-size 224 --epochs 100 \\
        --batch-size 64 --work-dir work_dirs/my_fcmae
    python tools/pretrain_fcmae.py --export-only work_dirs/my_fcmae/epoch_100.pth \\
        [--out backbone.pth]

The folder is searched recursively for common image types; files that cannot be read are
reported once and skipped. A folder that is not there or holds no image, and a ``--resume`` or
``--export-only`` checkpoint that is not there, stop the tool before it builds or writes
anything, naming each problem (:mod:`cnxv2_dense.checks`). The config is built from
``configs/_base_/fcmae_default.py`` (the official recipe: AdamW betas (0.9, 0.95), wd 0.05, lr
``--blr`` per 256 images scaled to the total batch, warmup then cosine, random resized crop
(0.2, 1) + flip, mask ratio 0.6) and run by the mmengine Runner: progress with ETA in the log,
checkpoints every ``--save-interval`` epochs, ``--resume``, ``--overwrite``, ``--amp`` and
``--launcher pytorch`` work as in ``tools/train.py`` (a work dir holding checkpoints of an earlier
run is only trained in again with ``--resume`` or ``--overwrite``).

At the end ``WORK_DIR/backbone.pth`` holds ``{'state_dict': <ConvNeXtV2 keys>, 'meta': {...}}``:
use it as ``backbone.init_cfg=dict(type='Pretrained', checkpoint='WORK_DIR/backbone.pth')`` in a
detection / segmentation config (see docs/fcmae.md).
"""
import argparse
import json
import os
import os.path as osp
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dist import is_main_process  # noqa: E402

from cnxv2_dense.arch import ARCH_SETTINGS, TOTAL_STRIDE, parse_arch  # noqa: E402
from cnxv2_dense.checkpoints import export_fcmae_backbone  # noqa: E402
from cnxv2_dense.checks import (image_folder_problems, missing_checkpoint_files,  # noqa: E402
                                missing_file, stop_on_input_problems)
from cnxv2_dense.datasets import IMG_EXTENSIONS  # noqa: E402
from cnxv2_dense.engine import build_runner, end_with_launcher  # noqa: E402
from cnxv2_dense.utils import (allow_mmengine_checkpoints, finish_distributed,  # noqa: E402
                               prepare_cpu_distributed, refuse_to_overwrite)

BASE_CONFIG = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', '_base_',
                       'fcmae_default.py')
BACKBONE_FILE = 'backbone.pth'
# The official schedule warms up for 40 of 800 epochs (5 %); shorter runs keep that fraction.
WARMUP_FRACTION = 40 / 800
MAX_WARMUP_EPOCHS = 40


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('image_folder', nargs='?', help='folder of images (searched recursively)')
    parser.add_argument('--arch', default='atto', choices=sorted(ARCH_SETTINGS),
                        help='encoder size (default: atto)')
    parser.add_argument('--arch-dict', type=json.loads,
                        help='custom encoder as JSON, e.g. \'{"depths": [2,2,6,2], '
                        '"dims": [40,80,160,320]}\' (overrides --arch)')
    parser.add_argument('--image-size', type=int, default=224,
                        help=f'training crop side, a multiple of {TOTAL_STRIDE} (default: 224)')
    parser.add_argument('--epochs', type=int, default=100)
    parser.add_argument('--warmup-epochs', type=int,
                        help='linear warmup epochs (default: 5%% of --epochs, at most 40)')
    parser.add_argument('--batch-size', type=int, default=64, help='images per GPU / process')
    parser.add_argument('--blr', type=float, default=1.5e-4,
                        help='learning rate per 256 images (scaled to the total batch)')
    parser.add_argument('--mask-ratio', type=float, default=0.6)
    parser.add_argument('--decoder-dim', type=int, default=512)
    parser.add_argument('--decoder-depth', type=int, default=1)
    parser.add_argument('--norm-pix-loss', action=argparse.BooleanOptionalAction, default=True,
                        help='reconstruct patch-normalised pixels, the paper\'s target and the '
                        'official default (default: on; --no-norm-pix-loss for raw pixels)')
    parser.add_argument('--num-workers', type=int, default=4, help='data loading processes')
    parser.add_argument('--save-interval', type=int,
                        help='checkpoint every N epochs (default: about 10 per run)')
    parser.add_argument('--log-interval', type=int, default=20, help='log every N iterations')
    parser.add_argument('--no-check-files', action='store_true',
                        help='do not open every image up front (faster start on huge folders; '
                        'unreadable files are then skipped when met)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--work-dir', help='output folder (default: work_dirs/fcmae_<arch>)')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU)')
    parser.add_argument('--resume', nargs='?', const='auto',
                        help='resume the latest checkpoint in the work dir, or the given one')
    parser.add_argument('--overwrite', action='store_true',
                        help='train even though the work dir holds checkpoints of an earlier '
                        'run (they are overwritten where names match)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='further config overrides, e.g. train_dataloader.num_workers=2')
    parser.add_argument('--export-only', metavar='CKPT',
                        help='only export the backbone of this FCMAE checkpoint and exit')
    parser.add_argument('--out', help=f'backbone file of --export-only (default: '
                        f'{BACKBONE_FILE} in --work-dir, else next to CKPT)')
    args = parser.parse_args(argv)
    if args.export_only is None and args.image_folder is None:
        parser.error('IMAGE_FOLDER is required (or --export-only CKPT)')
    if args.image_size % TOTAL_STRIDE or args.image_size < TOTAL_STRIDE:
        parser.error(f'--image-size must be a positive multiple of {TOTAL_STRIDE} (the mask patch '
                     f'size), got {args.image_size}')
    if args.epochs < 1 or args.batch_size < 1:
        parser.error('--epochs and --batch-size must be positive')
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _arch(args: argparse.Namespace):
    if args.arch_dict is not None:
        depths, dims = parse_arch(args.arch_dict)
        return dict(depths=depths, dims=dims)
    return args.arch


def build_pretrain_config(args: argparse.Namespace) -> Config:
    """The FCMAE base config with this run's data, model size and schedule."""
    cfg = Config.fromfile(BASE_CONFIG)
    arch = _arch(args)
    cfg.model.arch = arch
    cfg.model.mask_ratio = args.mask_ratio
    cfg.model.decoder_dim = args.decoder_dim
    cfg.model.decoder_depth = args.decoder_depth
    cfg.model.norm_pix_loss = args.norm_pix_loss

    pipeline = cfg.train_dataloader.dataset.pipeline
    for transform in pipeline:
        if transform['type'] == 'cnxv2_dense.RandomResizedCrop':
            transform['scale'] = args.image_size
    loader = cfg.train_dataloader
    loader.batch_size = args.batch_size
    loader.num_workers = args.num_workers
    loader.persistent_workers = args.num_workers > 0
    loader.pin_memory = torch.cuda.is_available()
    loader.drop_last = False  # small folders: keep every image
    loader.dataset.data_root = str(args.image_folder)
    loader.dataset.check_files = not args.no_check_files

    epochs = args.epochs
    warmup = (args.warmup_epochs if args.warmup_epochs is not None
              else min(MAX_WARMUP_EPOCHS, round(epochs * WARMUP_FRACTION)))
    warmup = max(0, min(warmup, epochs - 1))
    cfg.max_epochs, cfg.warmup_epochs = epochs, warmup
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs)
    cfg.param_scheduler = [
        dict(type='CosineAnnealingLR', T_max=epochs - warmup, eta_min=0.0, by_epoch=True,
             begin=warmup, end=epochs, convert_to_iter_based=True)]
    if warmup:
        cfg.param_scheduler.insert(0, dict(type='LinearLR', start_factor=1e-4, by_epoch=True,
                                           begin=0, end=warmup, convert_to_iter_based=True))
    cfg.optim_wrapper.optimizer.lr = args.blr
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'

    cfg.default_hooks.checkpoint.interval = args.save_interval or max(1, epochs // 10)
    cfg.default_hooks.logger.interval = args.log_interval
    cfg.randomness = dict(seed=args.seed)
    cfg.launcher = args.launcher
    name = args.arch if args.arch_dict is None else 'custom'
    cfg.work_dir = args.work_dir or osp.join('work_dirs', f'fcmae_{name}')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def check_inputs(args: argparse.Namespace, cfg: Optional[Config] = None) -> None:
    """Stop before anything is built on inputs that would stop the run later, naming each
    problem: an image folder that is not there or holds no image (the dataset skips images that
    cannot be read, so they are not opened here), a checkpoint to resume or export that is not
    there.

    Args:
        args (argparse.Namespace): The parsed command line.
        cfg (Config, optional): The pretraining config (None with ``--export-only``).
    """
    if cfg is None:
        problems = missing_file(args.export_only, 'checkpoint', 'give an FCMAE checkpoint '
                                'written by this tool or by tools/train.py', urls=False)
    else:
        dataset = cfg.train_dataloader.dataset
        problems = (image_folder_problems(str(dataset.data_root),
                                          dataset.get('extensions', IMG_EXTENSIONS))
                    + missing_checkpoint_files(cfg))
    stop_on_input_problems(problems, 'tools/pretrain_fcmae.py',
                           'the export' if cfg is None else 'pretraining', 'nothing was written')


def last_checkpoint(work_dir: str) -> Path:
    """The checkpoint the Runner wrote last (recorded in ``work_dir/last_checkpoint``)."""
    record = Path(work_dir) / 'last_checkpoint'
    if not record.is_file():
        raise FileNotFoundError(f'No checkpoint was written to {work_dir}')
    return Path(record.read_text().strip())


def export(checkpoint: str, out_file: str, meta: Optional[dict] = None) -> Path:
    """Export the encoder of ``checkpoint`` to ``out_file`` and say how to use it."""
    result = export_fcmae_backbone(checkpoint, out_file, meta=meta)
    print(f'Wrote the backbone ({len(result["state_dict"])} tensors, arch '
          f'{result["meta"]["arch"]}) to {out_file}.\nFine-tune with backbone=dict(arch=..., '
          f"init_cfg=dict(type='Pretrained', checkpoint='{out_file}')).")
    return Path(out_file)


def main(argv: Optional[List[str]] = None) -> Optional[Path]:
    """Train (unless ``--export-only``) and export; returns the backbone file path."""
    end_with_launcher()  # a rank of a distributed run ends with its launcher (torchrun)
    args = parse_args(argv)
    allow_mmengine_checkpoints()
    if args.export_only is not None:
        check_inputs(args)
        out = args.out or osp.join(args.work_dir or osp.dirname(osp.abspath(args.export_only)),
                                   BACKBONE_FILE)
        return export(args.export_only, out)

    cfg = build_pretrain_config(args)
    refuse_to_overwrite(cfg, args.overwrite, 'tools/pretrain_fcmae.py')
    check_inputs(args, cfg)
    prepare_cpu_distributed(cfg)
    runner = build_runner(cfg)
    try:
        runner.train()
        dataset = runner.train_dataloader.dataset
    finally:
        del runner  # the model it holds keeps the process group alive
        main_process = is_main_process()  # asked before the process group goes
        finish_distributed()
    if not main_process:
        return None
    meta = dict(image_folder=str(args.image_folder), image_size=args.image_size,
                mask_ratio=args.mask_ratio, epochs=args.epochs, images=len(dataset),
                skipped_files=list(getattr(dataset, 'skipped_files', [])))
    return export(str(last_checkpoint(cfg.work_dir)), args.out or osp.join(cfg.work_dir,
                                                                          BACKBONE_FILE), meta)


if __name__ == '__main__':
    main()
