"""Write the embedded synthetic shapes datasets (deterministic, seeded).

    python tools/make_demo_data.py                  # COCO layout in data/shapes_coco
    python tools/make_demo_data.py --layout ade     # ADE20K layout in data/shapes_ade
"""
import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from cnxv2_dense.datasets import SceneSpec, write_ade_shapes, write_coco_shapes  # noqa: E402

DEFAULT_ROOTS = {'coco': 'data/shapes_coco', 'ade': 'data/shapes_ade'}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layout', choices=sorted(DEFAULT_ROOTS), default='coco')
    parser.add_argument('--out', help='output folder (default: data/shapes_<layout>)')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true', help='rewrite an existing dataset')
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    root = Path(args.out or DEFAULT_ROOTS[args.layout])
    done = root / '.complete'
    if done.exists() and not args.force:
        print(f'{root} already holds the dataset (use --force to rewrite it)')
        return root
    writer = write_coco_shapes if args.layout == 'coco' else write_ade_shapes
    writer(root, num_train=args.num_train, num_val=args.num_val,
           spec=SceneSpec(image_size=args.image_size), seed=args.seed)
    done.write_text(f'{vars(args)}\n')
    print(f'wrote the {args.layout} shapes dataset to {root}')
    return root


if __name__ == '__main__':
    main()
