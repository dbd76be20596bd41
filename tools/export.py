"""Export a trained model to ONNX (mmdet's command-line style), checked against PyTorch.

    python tools/export.py CONFIG CHECKPOINT --out DIR [--shape H W] [--dynamic | --batch N]
                           [--fp16] [--opset 17] [--backbone-only] [--overwrite]

Writes ``DIR/<config name>[_backbone][_fp16].onnx`` and a ``.json`` beside it that says what the
input expects (size, channel order, normalisation inside the graph) and what the outputs are.
Supported: Mask R-CNN, Cascade Mask R-CNN (boxes, scores, labels, masks after NMS), UperNet
(per-pixel scores and labels at the input size) and, with ``--backbone-only``, the backbone of any
config (its ``out_indices`` feature maps). The exported file is run in ONNX Runtime at once and
compared with PyTorch on a seeded input; the result is printed and stored in the ``.json``.
Needs the deploy extra: ``pip install ".[deploy]"``. Guide: docs/deploy.md.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from cnxv2_dense.deploy import ExportOptions, export_model  # noqa: E402
from cnxv2_dense.deploy.exporter import DEFAULT_OPSET  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='the trained checkpoint (.pth)')
    parser.add_argument('--out', required=True, help='folder for the .onnx and .json files')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (multiples of 32); default: the config\'s '
                        'test size (segmentors with sliding windows: the crop size)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic height and width (and batch, except for detectors, which '
                        'take one image)')
    parser.add_argument('--batch', type=int, default=1,
                        help='static batch size (backbone, segmentor; default 1): a fixed '
                        'batch lets the runtime plan its buffers and kernels for it '
                        '(docs/speed.md measures it); detectors take one image')
    parser.add_argument('--fp16', action='store_true',
                        help='float16 weights and activations; GRN and LayerNorm statistics stay '
                        'in float32 (no overflow)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset (>= 17; default {DEFAULT_OPSET})')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export the backbone alone (its out_indices feature maps)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing output files')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    options = ExportOptions(shape=tuple(args.shape) if args.shape else None,
                            dynamic=args.dynamic, fp16=args.fp16, opset=args.opset,
                            overwrite=args.overwrite, backbone_only=args.backbone_only,
                            batch=args.batch)
    result = export_model(args.config, args.checkpoint, args.out, options)
    print(f'wrote {result.onnx_file} and {result.metadata_file.name}')
    print('check against PyTorch: ' + json.dumps(result.check))
    if not result.check.get('passed', False):
        raise SystemExit(f'error: the exported model does not match PyTorch on the check input '
                         f'({result.check}); the files are kept for inspection')
    return result


if __name__ == '__main__':
    main()
