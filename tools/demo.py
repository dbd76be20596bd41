"""The main job on the embedded default: train and evaluate the demo Mask R-CNN.

    python tools/demo.py [--work-dir work_dirs/demo] [--cfg-options ...]

Writes the synthetic shapes dataset if it is absent, trains
``configs/mask_rcnn_cnxv2_demo_shapes.py`` on CPU (or GPU when present), evaluates COCO bbox and
segm mAP on the val split every few epochs, and prints how the metrics rose.
"""
import argparse
import json
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / 'configs' / 'mask_rcnn_cnxv2_demo_shapes.py'
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50')


def metric_history(work_dir: Path) -> list:
    """Rows of (epoch, metrics...) from the newest run's ``vis_data/scalars.json``."""
    runs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not runs:
        return []
    rows = []
    for line in runs[-1].read_text().splitlines():
        record = json.loads(line)
        if METRICS[0] in record:
            rows.append([record['step']] + [record.get(k, float('nan')) for k in METRICS])
    return rows


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo_mask_rcnn_shapes')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    args = parser.parse_args(argv)

    import tools.make_demo_data as make_demo_data
    import tools.train as train
    make_demo_data.main(['--layout', 'coco'])
    train_argv = [str(DEMO_CONFIG), '--work-dir', args.work_dir]
    if args.cfg_options:
        train_argv += ['--cfg-options'] + [f'{k}={v}' for k, v in args.cfg_options.items()]
    train.main(train_argv)

    rows = metric_history(Path(args.work_dir))
    print('\nCOCO metrics on the val split of the synthetic shapes dataset')
    print('epoch  ' + '  '.join(f'{m.split("/")[1]:>13}' for m in METRICS))
    for row in rows:
        print(f'{row[0]:>5}  ' + '  '.join(f'{v:>13.3f}' for v in row[1:]))
    print(f'checkpoint and logs: {args.work_dir}')
    return rows


if __name__ == '__main__':
    main()
