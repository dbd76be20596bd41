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

from cnxv2_dense.analysis import block_activation_distances  # noqa: E402
from cnxv2_dense.arch import ARCH_SETTINGS  # noqa: E402
from cnxv2_dense.checkpoints import (arch_of, convert_state_dict,  # noqa: E402
                                     extract_state_dict, read_checkpoint)
from cnxv2_dense.datasets import list_images  # noqa: E402
from cnxv2_dense.models import IMAGENET_MEAN, IMAGENET_STD, ConvNeXtV2  # noqa: E402
from cnxv2_dense.utils import allow_mmengine_checkpoints  # noqa: E402

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def backbone_from_checkpoint(path: str) -> ConvNeXtV2:
    """A :class:`ConvNeXtV2` with the weights of ``path``; arch, GRN and layer scale from the
    weights themselves. Every block parameter must be present (output norms are not used)."""
    allow_mmengine_checkpoints()
    state = convert_state_dict(extract_state_dict(read_checkpoint(path))).state_dict
    depths, dims = arch_of(state)
    use_grn = any('.grn.' in key for key in state)
    layer_scale = any(key.endswith('.gamma') and '.grn.' not in key for key in state)
    model = ConvNeXtV2(arch=dict(depths=depths, dims=dims), out_indices=(3,), use_grn=use_grn,
                       layer_scale_init_value=1e-6 if layer_scale else 0.)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The output norms norm0..3 are not on the measured path (FCMAE checkpoints have none).
    missing = [k for k in missing if not k.startswith('norm')]
    unexpected = [k for k in unexpected if not k.startswith('norm')]
    if missing or unexpected:
        raise ValueError(f'{path}: the weights do not fit a ConvNeXt V2 '
                         f'{dict(depths=depths, dims=dims)} (missing {missing[:5]}, unexpected '
                         f'{unexpected[:5]})')
    return model


def random_backbone(arch: str, seed: int = 0) -> ConvNeXtV2:
    torch.manual_seed(seed)
    model = ConvNeXtV2(arch=arch, out_indices=(3,))
    model.init_weights()
    return model


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
