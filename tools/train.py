"""Train a detector, segmentor or FCMAE model from a config (mmdet's command-line interface).

    python tools/train.py configs/mask_rcnn_cnxv2_t_coco.py [--work-dir DIR] [--amp] [--resume]

The config's ``default_scope`` (mmdet, mmseg, ...) decides which toolbox builds it. A work dir
that holds checkpoints of an earlier run is not trained in again unless the run resumes
(``--resume``) or ``--overwrite`` is given.
"""
import argparse
import logging
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import print_log  # noqa: E402

from cnxv2_dense.checks import (detection_data_problems, missing_checkpoint_files,  # noqa: E402
                                segmentation_data_problems, stop_on_input_problems)
from cnxv2_dense.engine import build_runner, end_with_launcher  # noqa: E402
from cnxv2_dense.utils import (allow_mmengine_checkpoints, finish_distributed,  # noqa: E402
                               load_config, prepare_cpu_distributed, refuse_to_overwrite)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model from a config')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by total batch size / base batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or from the latest one in the '
                        'work dir when no path is given')
    parser.add_argument('--skip-data-check', action='store_true',
                        help='do not check the data before training (detection: COCO files, '
                        'images and classes; segmentation: every label map and image)')
    parser.add_argument('--overwrite', action='store_true',
                        help='train even though the work dir holds checkpoints of an earlier '
                        'run (they are overwritten where names match); without it such a run '
                        'stops and says how to go on')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. optim_wrapper.optimizer.lr=1e-4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_train_config(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line overrides."""
    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper' and not torch.cuda.is_available():
        # mmengine's AmpOptimWrapper refuses to start without an accelerator; the GPU recipes
        # ask for AMP, so on a CPU-only machine train them in fp32 instead of failing.
        print_log('AMP needs a GPU and none is available: training in fp32 with OptimWrapper.',
                  logger='current', level=logging.WARNING)
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('loss_scale', None)
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) in '
                               'the config; none was found.')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def check_data(cfg: Config) -> None:
    """Stop before training on inputs that would stop or spoil it later, naming each problem:
    missing checkpoint files, COCO files, images and classes of detection configs, label maps and
    images of segmentation ones.
    """
    problems = (missing_checkpoint_files(cfg) + detection_data_problems(cfg)
                + segmentation_data_problems(cfg))
    stop_on_input_problems(problems, cfg.filename, 'training',
                           '--skip-data-check trains without this check')


def main(argv=None) -> None:
    end_with_launcher()  # a rank of a distributed run ends with its launcher (torchrun)
    args = parse_args(argv)
    allow_mmengine_checkpoints()
    cfg = build_train_config(args)
    refuse_to_overwrite(cfg, args.overwrite, 'tools/train.py')
    if not args.skip_data_check:
        check_data(cfg)
    prepare_cpu_distributed(cfg)
    runner = build_runner(cfg)
    try:
        runner.train()
    finally:
        del runner  # the model it holds keeps the process group alive
        finish_distributed()


if __name__ == '__main__':
    main()
