"""Evaluate a checkpoint on a config's test set (mmdet's command-line interface).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show-dir vis]
    python tools/test.py ADE20K_CONFIG CHECKPOINT --tta   # the config's multi-scale test
    python tools/test.py CONFIG MODEL.onnx --backend onnxruntime   # an exported model

Works for detection (mmdet) and segmentation (mmseg) configs alike; the config's
``default_scope`` decides.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402

from cnxv2_dense.checks import (detection_data_problems, missing_checkpoint_files,  # noqa: E402
                                missing_file, segmentation_data_problems,
                                stop_on_input_problems)
from cnxv2_dense.engine import build_runner, end_with_launcher  # noqa: E402
from cnxv2_dense.utils import (allow_mmengine_checkpoints, finish_distributed,  # noqa: E402
                               load_config, prepare_cpu_distributed)

TEST_LOADERS = ('test_dataloader',)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump predictions to a pickle file (mmdet) or prediction '
                        'maps to this folder (mmseg)')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='save pictures with predictions drawn to this '
                        'folder (mmdet: inside the work dir, timestamped; mmseg: this folder, '
                        'pictures under vis_data/vis_image/)')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's `tta_pipeline` and `tta_model` "
                        '(the ADE20K configs: the ConvNeXt V2 paper\'s multi-scale test)')
    parser.add_argument('--skip-data-check', action='store_true',
                        help='do not check the test data first (detection: COCO files, images '
                        'and classes; segmentation: every label map and image)')
    parser.add_argument('--backend', choices=['pytorch', 'onnxruntime'], default='pytorch',
                        help='onnxruntime: CHECKPOINT is an .onnx file written by '
                        'tools/export.py, run in ONNX Runtime (CPU) behind the config\'s own '
                        'test pipeline and evaluator')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def check_data(cfg: Config) -> None:
    """Stop before testing on inputs that would stop or spoil it, naming each problem: a
    checkpoint that is not there, and the test set as ``tools/train.py`` checks its data (COCO
    files, images and classes of detection configs, label maps and images of segmentation
    ones)."""
    problems = (missing_checkpoint_files(cfg, init_cfg=False)
                + detection_data_problems(cfg, TEST_LOADERS)
                + segmentation_data_problems(cfg, TEST_LOADERS))
    stop_on_input_problems(problems, cfg.filename, 'testing',
                           '--skip-data-check tests without this check')


def _enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise RuntimeError('--show/--show-dir need a `visualization` hook in default_hooks')
    vis = hooks.visualization
    vis.draw = True
    if args.show:
        vis.show = True
        vis.wait_time = args.wait_time
    if not args.show_dir:
        return
    if cfg.get('default_scope') == 'mmseg':
        # mmseg's SegVisualizationHook has no output-folder argument: the visualizer's
        # LocalVisBackend writes to <save_dir>/vis_data/vis_image (as in mmseg's own tools/test.py).
        # It draws every `interval`-th batch; draw them all, as mmdet's hook does when testing.
        cfg.visualizer.save_dir = args.show_dir
        vis.interval = 1
    else:
        # mmdet's DetVisualizationHook writes to <work_dir>/<timestamp>/<test_out_dir>.
        vis.test_out_dir = args.show_dir


def _dump_predictions(cfg: Config, out: str) -> None:
    if cfg.get('default_scope') == 'mmseg':
        cfg.test_evaluator.output_dir = out
        cfg.test_evaluator.keep_results = True
        return
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {out}')
    evaluators = cfg.test_evaluator
    if not isinstance(evaluators, list):
        evaluators = [evaluators]
    cfg.test_evaluator = [*evaluators, ConfigDict(type='DumpDetResults', out_file_path=out)]


def _enable_tta(cfg: Config) -> None:
    """Test with the config's ``tta_pipeline``, the model wrapped in its ``tta_model``."""
    missing = [key for key in ('tta_pipeline', 'tta_model') if key not in cfg]
    if missing:
        raise RuntimeError(f'--tta needs `tta_pipeline` and `tta_model` in the config; '
                           f'{cfg.filename} has no {" / ".join(missing)}')
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)


def _use_onnxruntime(cfg: Config, args: argparse.Namespace) -> None:
    """Test the exported model ``args.checkpoint`` (``.onnx``) in place of the PyTorch one."""
    if args.tta:
        raise SystemExit('error: --tta runs the PyTorch model\'s test-time augmentation; '
                         'the onnxruntime backend tests without it')
    problems = [] if args.checkpoint.endswith('.onnx') else [
        f'{args.checkpoint}: --backend onnxruntime takes the .onnx file tools/export.py wrote']
    problems += missing_file(args.checkpoint, 'ONNX model', 'export one with tools/export.py '
                             'CONFIG CHECKPOINT --out DIR', urls=False)
    if not problems:
        problems += missing_file(osp.splitext(args.checkpoint)[0] + '.json', 'export metadata',
                                 'keep the .json tools/export.py wrote beside the .onnx file',
                                 urls=False)
    stop_on_input_problems(problems, cfg.filename, 'testing', 'nothing was run')
    from cnxv2_dense.deploy.runtime import dataset_meta_of, onnx_model_cfg
    from cnxv2_dense.deploy.metadata import read_metadata
    family = read_metadata(args.checkpoint)['family']
    cfg.model = ConfigDict(onnx_model_cfg(args.checkpoint, family,
                                          dataset_meta_of(args.checkpoint, cfg)))
    cfg.load_from = None  # the weights are inside the .onnx file


def build_test_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.backend == 'onnxruntime':
        _use_onnxruntime(cfg, args)
    if args.tta:
        _enable_tta(cfg)
    if args.show or args.show_dir:
        _enable_visualization(cfg, args)
    if args.out is not None:
        _dump_predictions(cfg, args.out)
    return cfg


def main(argv=None) -> dict:
    end_with_launcher()  # a rank of a distributed run ends with its launcher (torchrun)
    args = parse_args(argv)
    allow_mmengine_checkpoints()
    cfg = build_test_config(args)
    if not args.skip_data_check:
        check_data(cfg)
    prepare_cpu_distributed(cfg)
    runner = build_runner(cfg)
    try:
        return runner.test()
    finally:
        del runner  # the model it holds keeps the process group alive
        finish_distributed()


if __name__ == '__main__':
    main()
