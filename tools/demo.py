"""The main job on the embedded default: train and evaluate a demo model on synthetic shapes.

    python tools/demo.py [--task det|seg] [--work-dir DIR] [--resume | --overwrite]
                         [--cfg-options ...]

Writes the synthetic shapes dataset if it is absent, trains the task's demo config on CPU (or GPU
when present), evaluates it on the val split several times during training, and prints how the
metrics rose:

- ``det`` (default): ``configs/mask_rcnn_cnxv2_demo_shapes.py`` (Mask R-CNN) on the COCO layout,
  COCO bbox and segm mAP.
- ``seg``: ``configs/upernet_cnxv2_demo_shapes.py`` (UperNet) on the ADE20K-style layout, mIoU.
- ``mask2former`` and ``dino``: the query-based heads on the same data as ``seg`` and ``det``
  (``configs/mask2former_cnxv2_demo_shapes.py``, mIoU; ``configs/dino_cnxv2_demo_shapes.py``,
  COCO bbox mAP), slimmed to train on CPU; docs/query_heads.md compares them with the first two.

A second demo in the same work dir stops before training (the first one's checkpoint is kept):
run it with ``--work-dir NEW_DIR``, ``--resume`` (continue the earlier run) or ``--overwrite``.
"""
import argparse
import json
import os.path as osp
import sys
from pathlib import Path
from typing import NamedTuple, Tuple

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class DemoTask(NamedTuple):
    """What differs between the demos: config, dataset layout, metrics and how to print them."""
    config: Path
    layout: str  # tools/make_demo_data.py --layout
    work_dir: str
    metrics: Tuple[str, ...]  # keys in vis_data/scalars.json; the first marks evaluation rows
    step: str  # what `step` counts in scalars.json for this config's train loop
    title: str


TASKS = {
    'det': DemoTask(ROOT / 'configs' / 'mask_rcnn_cnxv2_demo_shapes.py', 'coco',
                    'work_dirs/demo_mask_rcnn_shapes',
                    ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'),
                    'epoch', 'COCO metrics on the val split of the synthetic shapes dataset'),
    'seg': DemoTask(ROOT / 'configs' / 'upernet_cnxv2_demo_shapes.py', 'ade',
                    'work_dirs/demo_upernet_shapes', ('mIoU', 'mAcc', 'aAcc'), 'iter',
                    'Semantic segmentation metrics (%) on the val split of the synthetic shapes '
                    'dataset'),
    'mask2former': DemoTask(ROOT / 'configs' / 'mask2former_cnxv2_demo_shapes.py', 'ade',
                            'work_dirs/demo_mask2former_shapes', ('mIoU', 'mAcc', 'aAcc'),
                            'iter', 'Mask2Former: semantic segmentation metrics (%) on the val '
                            'split of the synthetic shapes dataset'),
    'dino': DemoTask(ROOT / 'configs' / 'dino_cnxv2_demo_shapes.py', 'coco',
                     'work_dirs/demo_dino_shapes', ('coco/bbox_mAP', 'coco/bbox_mAP_50'),
                     'epoch', 'DINO: COCO bbox metrics on the val split of the synthetic shapes '
                     'dataset'),
}


def metric_history(work_dir: Path, metrics: Tuple[str, ...]) -> list:
    """Rows of (step, metrics...) from the newest run's ``vis_data/scalars.json``."""
    runs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not runs:
        return []
    rows = []
    for line in runs[-1].read_text().splitlines():
        record = json.loads(line)
        if metrics[0] in record:
            rows.append([record['step']] + [record.get(k, float('nan')) for k in metrics])
    return rows


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--task', choices=sorted(TASKS), default='det',
                        help='det: Mask R-CNN, COCO mAP; seg: UperNet, mIoU; mask2former: '
                             'Mask2Former, mIoU; dino: DINO, bbox mAP (default: det)')
    parser.add_argument('--work-dir', help='default: work_dirs/demo_<model>_shapes')
    again = parser.add_mutually_exclusive_group()
    again.add_argument('--resume', action='store_true',
                       help='continue the run in the work dir from its last checkpoint')
    again.add_argument('--overwrite', action='store_true',
                       help='train again in a work dir that holds an earlier run\'s checkpoints')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    work_dir = args.work_dir or task.work_dir

    import tools.make_demo_data as make_demo_data
    import tools.train as train
    make_demo_data.main(['--layout', task.layout])
    train_argv = [str(task.config), '--work-dir', work_dir]
    train_argv += ['--resume'] * args.resume + ['--overwrite'] * args.overwrite
    if args.cfg_options:
        train_argv += ['--cfg-options'] + [f'{k}={v}' for k, v in args.cfg_options.items()]
    train.main(train_argv)

    rows = metric_history(Path(work_dir), task.metrics)
    print(f'\n{task.title}')
    print(f'{task.step:>5}  ' + '  '.join(f'{m.split("/")[-1]:>13}' for m in task.metrics))
    for row in rows:
        print(f'{row[0]:>5}  ' + '  '.join(f'{v:>13.3f}' for v in row[1:]))
    print(f'checkpoint and logs: {work_dir}')
    return rows


if __name__ == '__main__':
    main()
