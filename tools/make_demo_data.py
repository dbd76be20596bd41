"""Write the embedded synthetic shapes datasets (deterministic, seeded).

    python tools/make_demo_data.py                  # COCO layout in data/shapes_coco (400 train)
    python tools/make_demo_data.py --layout ade     # ADE20K layout in data/shapes_ade (4000 train)

A folder that already holds a complete dataset is kept as it is if it was written with the same
settings; with other settings the script stops and says how to rewrite it (``--force``) rather
than train a demo on data other than what was asked for.
"""
import argparse
import ast
import json
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from cnxv2_dense.datasets import (SceneSpec, layout_files, write_ade_shapes,  # noqa: E402
                                  write_coco_shapes)

DEFAULT_ROOTS = {'coco': 'data/shapes_coco', 'ade': 'data/shapes_ade'}
# The segmentation demo trains from scratch: on 400 images it stalls near 43 mIoU, on 4000 it
# passes 50 (docs/demo_experiments.md). Each image takes ~5 ms to write.
DEFAULT_NUM_TRAIN = {'coco': 400, 'ade': 4000}
# What makes two datasets the same; recorded in the folder's `.complete` marker.
SETTINGS = ('layout', 'num_train', 'num_val', 'image_size', 'seed')
MARKER = '.complete'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layout', choices=sorted(DEFAULT_ROOTS), default='coco')
    parser.add_argument('--out', help='output folder (default: data/shapes_<layout>)')
    parser.add_argument('--num-train', type=int,
                        help='training images (default: 400 for coco, 4000 for ade)')
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true', help='rewrite an existing dataset')
    args = parser.parse_args(argv)
    if args.num_train is None:
        args.num_train = DEFAULT_NUM_TRAIN[args.layout]
    return args


def recorded_settings(marker: Path) -> dict:
    """The settings a finished dataset was written with (JSON; older markers hold a dict repr)."""
    text = marker.read_text()
    try:
        recorded = json.loads(text)
    except json.JSONDecodeError:
        recorded = ast.literal_eval(text.strip())
    return {key: recorded.get(key) for key in SETTINGS}


def rewrite_command(args: argparse.Namespace, root: Path) -> str:
    """The command that rewrites ``root`` with the settings asked for now."""
    return (f'python tools/make_demo_data.py --layout {args.layout} --out {root} '
            f'--num-train {args.num_train} --num-val {args.num_val} '
            f'--image-size {args.image_size} --seed {args.seed} --force')


def main(argv=None) -> Path:
    args = parse_args(argv)
    root = Path(args.out or DEFAULT_ROOTS[args.layout])
    wanted = {key: getattr(args, key) for key in SETTINGS}
    marker = root / MARKER
    if marker.exists() and not args.force:
        recorded = recorded_settings(marker)
        if recorded == wanted:
            print(f'{root} already holds the dataset (use --force to rewrite it)')
            return root
        differ = ', '.join(f'{key}={recorded[key]!r} (asked for {wanted[key]!r})'
                           for key in SETTINGS if recorded[key] != wanted[key])
        sys.exit(f'{root} holds a shapes dataset written with other settings: {differ}. '
                 f'Rewrite it with `{rewrite_command(args, root)}`, or pass --out to write '
                 'elsewhere.')
    if marker.exists():  # --force: drop the old dataset's files so no stale image stays behind
        old = recorded_settings(marker)
        for path in layout_files(root, old['layout'], old['num_train'], old['num_val']):
            path.unlink(missing_ok=True)
    writer = write_coco_shapes if args.layout == 'coco' else write_ade_shapes
    writer(root, num_train=args.num_train, num_val=args.num_val,
           spec=SceneSpec(image_size=args.image_size), seed=args.seed)
    marker.write_text(json.dumps(wanted) + '\n')
    print(f'wrote the {args.layout} shapes dataset ({args.num_train} train / {args.num_val} val '
          f'images) to {root}')
    return root


if __name__ == '__main__':
    main()
