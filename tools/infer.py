"""Run a trained detector or segmentor on images and save pictures with the predictions drawn.

    python tools/infer.py CONFIG CHECKPOINT INPUT [--out-dir vis] [--score-thr 0.3] [--device cpu]

INPUT is an image or a folder (searched recursively). Detection configs (default_scope mmdet)
draw boxes and masks above ``--score-thr``; segmentation configs (mmseg) draw a colour-coded
overlay. One PNG per image is written to ``--out-dir`` with the same relative path.

Before the model is built, the checkpoint must exist and every input image must be usable (not
empty, an image, not truncated); otherwise it stops naming each problem, so a folder is not left
half-done at its first bad file.
"""
import argparse
import os.path as osp
import sys
from pathlib import Path
from typing import List

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import mmcv  # noqa: E402
import torch  # noqa: E402

from cnxv2_dense.datasets.image_check import UnusableImage, checked_image_size  # noqa: E402
from cnxv2_dense.utils import (allow_mmengine_checkpoints, load_config,  # noqa: E402
                               stop_on_input_problems)

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(path: Path) -> List[Path]:
    """The image itself, or every image under a folder, sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f'No image or folder at {path}')
    images = sorted(p for p in path.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f'No images ({", ".join(IMAGE_SUFFIXES)}) under {path}')
    return images


def input_problems(checkpoint: str, images: List[Path]) -> List[str]:
    """One line per problem of the inputs: a checkpoint that is not there, unusable images."""
    problems = []
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        problems.append(f'{checkpoint}: the checkpoint does not exist; give the path of a '
                        'trained checkpoint (or a URL)')
    for path in images:
        try:
            checked_image_size(str(path))
        except UnusableImage as err:
            problems.append(f'{path}: {err}; replace it, or move it out of the input')
    return problems


def build_predictor(config: str, checkpoint: str, device: str):
    """Return ``(predict(path) -> result, visualizer, scope)`` for the config's toolbox."""
    scope = load_config(config).get('default_scope', 'mmdet')  # checks the toolbox is there
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        from mmseg.visualization import SegLocalVisualizer
        model = init_model(config, checkpoint, device=device)
        visualizer = SegLocalVisualizer(name='cnxv2_infer', alpha=0.5)
        predict = lambda image: inference_model(model, image)  # noqa: E731
    elif scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.visualization import DetLocalVisualizer
        model = init_detector(config, checkpoint, device=device)
        visualizer = DetLocalVisualizer(name='cnxv2_infer')
        predict = lambda image: inference_detector(model, image)  # noqa: E731
    else:
        raise ValueError(f'tools/infer.py handles mmdet and mmseg configs, got scope {scope!r}')
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
    args = parser.parse_args(argv)

    allow_mmengine_checkpoints()
    source = Path(args.input)
    images = list_images(source)
    stop_on_input_problems(input_problems(args.checkpoint, images), 'tools/infer.py',
                           'inference', 'nothing was written')
    predict, visualizer, scope = build_predictor(args.config, args.checkpoint, args.device)
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
