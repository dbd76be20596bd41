"""Run a trained detector or segmentor on images and save pictures with the predictions drawn.

    python tools/infer.py CONFIG CHECKPOINT INPUT [--out-dir vis] [--score-thr 0.3] [--device cpu]
    python tools/infer.py CONFIG MODEL.onnx INPUT --backend onnxruntime   # an exported model

INPUT is an image or a folder (searched recursively). Detection configs (default_scope mmdet)
draw boxes and masks above ``--score-thr``; segmentation configs (mmseg) draw a colour-coded
overlay. One PNG per image is written to ``--out-dir`` with the same relative path.

Before the model is built, the config and the checkpoint must exist, INPUT must hold images and
every one of them must be usable (not empty, an image, not truncated); otherwise it stops naming
each problem (:mod:`cnxv2_dense.checks`), so a folder is not left half-done at its first bad file.
"""
import argparse
import os.path as osp
import sys
from pathlib import Path
from typing import List

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import mmcv  # noqa: E402
import torch  # noqa: E402

from cnxv2_dense.checks import (image_input_problems, images_in, missing_file,  # noqa: E402
                                stop_on_input_problems)
from cnxv2_dense.utils import allow_mmengine_checkpoints, load_config  # noqa: E402


def use_config_classes_if_checkpoint_has_none(model, cfg, checkpoint: str) -> None:
    """mmdet's ``init_detector`` and mmseg's ``init_model`` take the classes and palette from
    the checkpoint's meta and, where it has none (a converted or hand-saved checkpoint), fall
    back to COCO's / Cityscapes' with a warning: the pictures then name the wrong classes in the
    wrong colours. Take the config's test-set ``metainfo`` instead, where it gives classes.
    (This reads the checkpoint a second time: the toolboxes' ``init_*`` do not say whether they
    fell back.)"""
    from cnxv2_dense.deploy.model_loading import config_metainfo, read_trained_checkpoint
    classes = config_metainfo(cfg, 'classes')
    if classes and not read_trained_checkpoint(checkpoint)[1]:
        palette = config_metainfo(cfg, 'palette')
        model.dataset_meta = dict(classes=classes, **({} if palette is None else
                                                      dict(palette=palette)))


def build_predictor(config: str, checkpoint: str, device: str, backend: str = 'pytorch'):
    """Return ``(predict(path) -> result, visualizer, scope)`` for the config's toolbox.

    ``backend='onnxruntime'``: ``checkpoint`` is an ``.onnx`` file from ``tools/export.py``, run
    in ONNX Runtime behind the toolbox's own test pipeline (:mod:`cnxv2_dense.deploy.runtime`).
    """
    cfg = load_config(config)  # checks the toolbox is there
    scope = cfg.get('default_scope', 'mmdet')
    onnx_model = None
    if backend == 'onnxruntime':
        from cnxv2_dense.deploy.runtime import build_onnx_model
        onnx_model = build_onnx_model(checkpoint, cfg)
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        from mmseg.visualization import SegLocalVisualizer
        model = onnx_model or init_model(config, checkpoint, device=device)
        visualizer = SegLocalVisualizer(name='cnxv2_infer', alpha=0.5)
        predict = lambda image: inference_model(model, image)  # noqa: E731
    elif scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.visualization import DetLocalVisualizer
        model = onnx_model or init_detector(config, checkpoint, device=device)
        visualizer = DetLocalVisualizer(name='cnxv2_infer')
        predict = lambda image: inference_detector(model, image)  # noqa: E731
    else:
        raise ValueError(f'tools/infer.py handles mmdet and mmseg configs, got scope {scope!r}')
    if onnx_model is None:
        use_config_classes_if_checkpoint_has_none(model, cfg, checkpoint)
    visualizer.dataset_meta = model.dataset_meta
    return predict, visualizer, scope


def main(argv=None) -> List[Path]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('input', help='an image or a folder of images')
    parser.add_argument('--out-dir', default='work_dirs/infer')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection score threshold for drawing')
    parser.add_argument('--device', default='cuda:0' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--backend', choices=['pytorch', 'onnxruntime'], default='pytorch',
                        help='onnxruntime: CHECKPOINT is an .onnx file written by '
                        'tools/export.py, run in ONNX Runtime (CPU)')
    args = parser.parse_args(argv)

    allow_mmengine_checkpoints()
    source = Path(args.input)
    images = images_in(source)
    problems = (missing_file(args.config, 'config', 'give the path of a config file', urls=False)
                + missing_file(args.checkpoint, 'checkpoint',
                               'give the path of a trained checkpoint (or a URL)')
                + image_input_problems(source, images))
    stop_on_input_problems(problems, 'tools/infer.py', 'inference', 'nothing was written')
    predict, visualizer, scope = build_predictor(args.config, args.checkpoint, args.device,
                                                 args.backend)
    written = []
    for path in images:
        result = predict(str(path))
        image = mmcv.imread(str(path), channel_order='rgb')
        relative = path.relative_to(source) if source.is_dir() else Path(path.name)
        out_file = Path(args.out_dir) / relative.with_suffix('.png')
        out_file.parent.mkdir(parents=True, exist_ok=True)
        extra = dict(pred_score_thr=args.score_thr) if scope == 'mmdet' else {}
        visualizer.add_datasample(path.stem, image, data_sample=result, draw_gt=False,
                                  show=False, out_file=str(out_file), **extra)
        written.append(out_file)
    print(f'wrote {len(written)} pictures to {args.out_dir}')
    return written


if __name__ == '__main__':
    main()
