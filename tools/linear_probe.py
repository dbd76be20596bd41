"""Did your pretraining put anything into the backbone? A frozen linear probe on your own data.

    python tools/linear_probe.py CKPT [CKPT ...] --data DATA_ROOT --num-classes N --out DIR \\
        [--random atto] [--image-size 224] [--max-train 500] [--max-val 300] [--reduce-zero-label]

``DATA_ROOT`` has mmseg's ADE20K layout: ``images/{training,validation}/*`` and
``annotations/{training,validation}/*.png`` (a label map per image, same file stem). Each
backbone stays frozen; a linear layer on all four stages (``cnxv2_dense.analysis.linear_probe``)
is trained on the training images and scored on the validation images (mIoU, as mmseg's
IoUMetric). Images are resized (shorter side) and centre-cropped to ``--image-size``, label maps
alike with nearest-neighbour sampling. Label 255 is ignored; ``--reduce-zero-label`` maps 0 to
255 and ``k`` to ``k - 1`` first, as the ADE20K configs do.

A checkpoint is any file the loader reads (``tools/pretrain_fcmae.py`` outputs, FCMAE training
checkpoints, the official / timm / mmpretrain / Hugging Face layouts). Always compare with
``--random ARCH`` (the same size at random initialisation): the difference is what the
pretraining added. The probe takes minutes on a CPU; it measures linearly decodable features,
so a gain here is a reason to fine-tune, not a promise about the fine-tuned score.

Writes ``DIR/probe.csv`` (``checkpoint,split,miou,class_iou``) and prints one line per backbone.
"""
import argparse
import csv
import json
import os.path as osp
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from PIL import Image  # noqa: E402

from cnxv2_dense.analysis import (LinearProbe, backbone_from_checkpoint,  # noqa: E402
                                  dense_features, random_backbone)
from cnxv2_dense.arch import ARCH_SETTINGS  # noqa: E402
from cnxv2_dense.datasets import list_images  # noqa: E402
from cnxv2_dense.models import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
SPLITS = ('training', 'validation')
PROBE_STRIDE = 8


def _resize_crop(image: Image.Image, size: int, resample) -> np.ndarray:
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)),
                          max(size, round(image.height * scale))), resample)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def load_split(root: Path, split: str, size: int, limit: int, reduce_zero_label: bool
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalised ``(N, 3, size, size)`` images and ``(N, size, size)`` labels of one split
    (the first ``limit`` images, sorted by name, each with its label map)."""
    image_dir, label_dir = root / 'images' / split, root / 'annotations' / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f'{folder} does not exist: --data must hold images/{split} and '
                f'annotations/{split} (the ADE20K layout; tools/make_demo_data.py --layout ade '
                f'writes an example)')
    files = sorted(list_images(image_dir))[:limit]
    if not files:
        raise FileNotFoundError(f'no images in {image_dir}')
    images, labels = [], []
    for file in files:
        label_file = label_dir / (Path(file).stem + '.png')
        if not label_file.is_file():
            raise FileNotFoundError(f'{file} has no label map {label_file}: every image needs '
                                    f'one, with the same file stem and a .png extension')
        images.append(_resize_crop(Image.open(file).convert('RGB'), size, Image.BILINEAR))
        label = _resize_crop(Image.open(label_file), size, Image.NEAREST).astype(np.int64)
        if label.ndim != 2:
            raise ValueError(f'{label_file} is not a single-channel label map (shape '
                             f'{label.shape}): save class indices as an 8-bit grey PNG')
        if reduce_zero_label:
            label = np.where(label == 0, 255, label - 1)
            label[label == 254] = 255
        labels.append(label)
    images = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return (images - MEAN) / STD, torch.from_numpy(np.stack(labels))


def check_labels(labels: torch.Tensor, num_classes: int, split: str) -> None:
    values = labels.unique()
    bad = values[(values != 255) & ((values < 0) | (values >= num_classes))]
    if len(bad):
        raise ValueError(f'{split} label maps hold values {bad.tolist()[:10]} outside 0..'
                         f'{num_classes - 1} (and 255, ignored): set --num-classes, or '
                         f'--reduce-zero-label if 0 means "unlabeled"')


def probe_all(backbones: Dict[str, torch.nn.Module], data: Dict[str, tuple], num_classes: int,
              steps: int, seed: int) -> List[dict]:
    rows = []
    (train_x, train_y), (val_x, val_y) = data['training'], data['validation']
    for name, backbone in backbones.items():
        probe = LinearProbe(num_classes, steps=steps, seed=seed).fit(
            dense_features(backbone, train_x, PROBE_STRIDE), train_y)
        for split, (x, y) in (('training', (train_x, train_y)), ('validation', (val_x, val_y))):
            result = probe.score(dense_features(backbone, x, PROBE_STRIDE), y)
            rows.append(dict(checkpoint=name, split=split, miou=round(result.miou, 2),
                             class_iou=result.class_iou))
    return rows


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='*', help='checkpoint files (any supported format)')
    parser.add_argument('--data', required=True, help='dataset root in the ADE20K layout')
    parser.add_argument('--num-classes', type=int, required=True,
                        help='classes in the label maps (after --reduce-zero-label)')
    parser.add_argument('--out', required=True, help='output folder for probe.csv')
    parser.add_argument('--random', metavar='ARCH', choices=sorted(ARCH_SETTINGS),
                        help='add a randomly initialised backbone of this size (the baseline)')
    parser.add_argument('--image-size', type=int, default=224,
                        help=f'side after resize and centre crop, a multiple of {PROBE_STRIDE}')
    parser.add_argument('--max-train', type=int, default=500)
    parser.add_argument('--max-val', type=int, default=300)
    parser.add_argument('--reduce-zero-label', action='store_true')
    parser.add_argument('--steps', type=int, default=300, help='probe optimiser steps')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if not args.checkpoints and args.random is None:
        parser.error('give at least one checkpoint or --random ARCH')
    if args.image_size % PROBE_STRIDE:
        parser.error(f'--image-size {args.image_size} must be a multiple of {PROBE_STRIDE}')
    return args


def main(argv: Optional[List[str]] = None) -> List[dict]:
    args = parse_args(argv)
    MMLogger.get_instance('linear_probe', log_level='WARNING')  # no per-parameter init log
    root = Path(args.data)
    data = {}
    for split, limit in zip(SPLITS, (args.max_train, args.max_val)):
        data[split] = load_split(root, split, args.image_size, limit, args.reduce_zero_label)
        check_labels(data[split][1], args.num_classes, split)
    backbones = {}
    if args.random is not None:
        backbones[f'random_init_{args.random}'] = random_backbone(
            args.random, args.seed, out_indices=(0, 1, 2, 3))
    for path in args.checkpoints:
        backbones[Path(path).stem] = backbone_from_checkpoint(path, out_indices=(0, 1, 2, 3))
    rows = probe_all(backbones, data, args.num_classes, args.steps, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / 'probe.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['checkpoint', 'split', 'miou', 'class_iou'])
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row, class_iou=json.dumps(row['class_iou'])))
    for row in rows:
        if row['split'] == 'validation':
            print(f"{row['checkpoint']}: validation mIoU {row['miou']:.1f} "
                  f"(per class {row['class_iou']})")
    return rows


if __name__ == '__main__':
    main()
