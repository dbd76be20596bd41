"""Feature-collapse analysis (ConvNeXt V2 paper, Fig. 3-4 / Eq. 1) of one or more checkpoints.

    python tools/feature_collapse.py CKPT [CKPT ...] --images FOLDER --out DIR \\
        [--random atto] [--image-size 128] [--max-images 64]

For every block of each backbone it takes the expansion MLP's activation after GELU (the input
of GRN, the same tensor with and without GRN), computes the mean pairwise cosine distance
between its channel maps per image and averages it over the images
(:mod:`cnxv2_dense.analysis.feature_collapse`). Low values mean redundant, collapsed channels.

A checkpoint is any file the loader reads (FCMAE training checkpoints, exported backbones, the
official / timm / mmpretrain / Hugging Face layouts); the arch, GRN and layer scale are read off
its weights. ``--random ARCH`` adds a randomly initialised ConvNeXt V2 of that size as a
reference line. Writes ``DIR/collapse.csv`` (``checkpoint,layer,distance``, layer = block index
in network order) and ``DIR/collapse.png`` (distance against block index, one line each).
"""
import argparse
import csv
import os.path as osp
import sys
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from PIL import Image  # noqa: E402

from cnxv2_dense.analysis import (backbone_from_checkpoint,  # noqa: E402
                                  block_activation_distances, random_backbone)
from cnxv2_dense.arch import ARCH_SETTINGS  # noqa: E402
from cnxv2_dense.datasets import list_images  # noqa: E402
from cnxv2_dense.models import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def load_images(folder: str, size: int, max_images: int) -> torch.Tensor:
    """Up to ``max_images`` images of ``folder`` (sorted), shorter side resized to ``size`` and
    centre-cropped, normalised with the ImageNet statistics."""
    files = sorted(list_images(folder))[:max_images]
    if not files:
        raise FileNotFoundError(f'No images found under {folder}')
    batch = []
    for file in files:
        image = Image.open(file).convert('RGB')
        scale = size / min(image.size)
        image = image.resize((max(size, round(image.width * scale)),
                              max(size, round(image.height * scale))), Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        batch.append(np.asarray(image.crop((left, top, left + size, top + size))))
    images = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float()
    return (images - MEAN) / STD


def write_csv(distances: Dict[str, List[float]], out_file: Path) -> None:
    with open(out_file, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['checkpoint', 'layer', 'distance'])
        for name, values in distances.items():
            for layer, value in enumerate(values):
                writer.writerow([name, layer, f'{value:.6f}'])


def plot(distances: Dict[str, List[float]], out_file: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in distances.items():
        ax.plot(range(len(values)), values, marker='o', label=name)
    ax.set_xlabel('block index')
    ax.set_ylabel('mean pairwise cosine distance')
    ax.set_title('Feature collapse (MLP activation after GELU)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_file, dpi=120)
    plt.close(fig)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoints', nargs='*', help='checkpoint files (any supported format)')
    parser.add_argument('--images', required=True, help='folder of images (searched recursively)')
    parser.add_argument('--out', required=True, help='output folder for collapse.csv / .png')
    parser.add_argument('--random', metavar='ARCH', choices=sorted(ARCH_SETTINGS),
                        help='add a randomly initialised backbone of this size')
    parser.add_argument('--image-size', type=int, default=224)
    parser.add_argument('--max-images', type=int, default=64)
    args = parser.parse_args(argv)
    if not args.checkpoints and args.random is None:
        parser.error('give at least one checkpoint or --random ARCH')
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, List[float]]:
    args = parse_args(argv)
    MMLogger.get_instance('feature_collapse', log_level='WARNING')  # no per-parameter init log
    images = load_images(args.images, args.image_size, args.max_images)
    models = {}
    if args.random is not None:
        models[f'random_init_{args.random}'] = random_backbone(args.random)
    for path in args.checkpoints:
        models[Path(path).stem] = backbone_from_checkpoint(path)
    distances = {name: block_activation_distances(model, images) for name, model in models.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(distances, out / 'collapse.csv')
    plot(distances, out / 'collapse.png')
    for name, values in distances.items():
        print(f'{name}: ' + ' '.join(f'{v:.3f}' for v in values))
    return distances


if __name__ == '__main__':
    main()
