"""Export a trained model to ONNX, check it against PyTorch on the spot, write its metadata.

Route: ``torch.onnx.export`` (the TorchScript exporter) with the detectors' post-processing in
standard ONNX ops (``RoiAlign``, ``NonMaxSuppression``; :mod:`cnxv2_dense.deploy.onnx_ops`), not
mmdeploy: its last release (1.3.1, Dec 2023) pins protobuf <= 3.20.2 (onnx 1.23 needs a newer one)
and runs its detectors through a custom-ops library built for onnxruntime 1.15. docs/deploy.md
says more. Every export is run in ONNX Runtime at once and compared with the PyTorch model on a
seeded input (as timm's ``onnx_export.py`` checks); the result goes into the metadata.
"""
import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from torch import nn

from ..checks import stop_on_input_problems
from ..utils import load_config
from ..utils.atomic_file import atomic_output
from .families import model_family
from .grn_export import use_export_grn
from .metadata import build_metadata, preprocessing, write_metadata
from .model_loading import (build_model, checkpoint_fit_problems, config_metainfo, load_exactly,
                            read_trained_checkpoint)
from .parity import compare_detections, relative_error
from .requirements import require
from . import torch_support
from .torch_support import export_torchscript

DEFAULT_OPSET = 17  # LayerNormalization (17); RoiAlign half_pixel (16)
MIN_OPSET = 17
TOTAL_STRIDE = 32  # ConvNeXt V2's stem (4) and three 2x downsamples
# The spot check's limits (fp32 export): a float32 graph equals PyTorch to rounding.
DENSE_TOLERANCE = 1e-4
# fp16: float16 rounds every activation to 11 significant bits (2^-11 = 4.9e-4 relative); through
# a network that compounds to about 1e-2 of the output's range (measured in the tests).
DENSE_TOLERANCE_FP16 = 1e-2


@dataclass
class ExportOptions:
    """What ``tools/export.py`` takes besides the config, checkpoint and output folder."""
    shape: Optional[Tuple[int, int]] = None
    dynamic: bool = False
    fp16: bool = False
    opset: int = DEFAULT_OPSET
    overwrite: bool = False
    backbone_only: bool = False
    batch: int = 1  # a static batch size (backbone, segmentor); --dynamic makes it dynamic


@dataclass
class ExportResult:
    onnx_file: Path
    metadata_file: Path
    metadata: Dict[str, Any]
    check: Dict[str, Any] = field(default_factory=dict)


def output_files(config: str, out_dir: str, options: ExportOptions) -> Tuple[Path, Path]:
    """``DIR/<config name>[_backbone][_fp16].onnx`` and the ``.json`` beside it."""
    stem = Path(config).stem + ('_backbone' if options.backbone_only else '') + \
        ('_fp16' if options.fp16 else '')
    return Path(out_dir) / f'{stem}.onnx', Path(out_dir) / f'{stem}.json'


def _test_cfg(cfg: Config) -> Dict[str, Any]:
    return dict(cfg.model.get('test_cfg') or {})


def default_shape(cfg: Config, family: str) -> Tuple[int, int]:
    """The input size the export is traced (and, static, fixed) at when ``--shape`` is not given.

    A segmentor with sliding-window inference: its crop size (the runner slides the crops). Else
    the preprocessor's fixed pad size, or the test resize's scale (short side as height),
    rounded up to the total stride.
    """
    pre = preprocessing(cfg)
    test_cfg = _test_cfg(cfg)
    if family == 'segmentor' and test_cfg.get('mode') == 'slide':
        h, w = test_cfg['crop_size']
    elif pre['pad_to_size']:
        h, w = pre['pad_to_size']
    elif pre['test_resize'] and pre['test_resize']['scale']:
        scale = pre['test_resize']['scale']
        h, w = min(scale), max(scale)
    else:
        h, w = 224, 224
    return (-(-int(h) // TOTAL_STRIDE) * TOTAL_STRIDE, -(-int(w) // TOTAL_STRIDE) * TOTAL_STRIDE)


def shape_problems(shape: Sequence[int]) -> List[str]:
    """A static shape the network cannot take, with the reason and the nearest good one."""
    h, w = (int(s) for s in shape)
    if h % TOTAL_STRIDE == 0 and w % TOTAL_STRIDE == 0 and h > 0 and w > 0:
        return []
    up = [max(TOTAL_STRIDE, -(-s // TOTAL_STRIDE) * TOTAL_STRIDE) for s in (h, w)]
    return [f'--shape {h} {w}: ConvNeXt V2 downsamples by {TOTAL_STRIDE}, so height and width '
            f'must be positive multiples of {TOTAL_STRIDE} (mmdet and mmseg pad to them); use '
            f'--shape {up[0]} {up[1]} and pad the images bottom / right']


def export_problems(config: str, checkpoint: str, out_dir: str, options: ExportOptions
                    ) -> List[str]:
    """Problems found before anything is built: the checkpoint, the output files, the options."""
    problems = []
    if not Path(checkpoint).is_file():
        problems.append(f'{checkpoint}: the checkpoint does not exist; give the .pth file '
                        'tools/train.py wrote (work_dirs/<config>/epoch_N.pth or iter_N.pth)')
    if not options.overwrite:
        for path in output_files(config, out_dir, options):
            if path.exists():
                problems.append(f'{path}: exists and would be overwritten; pass --overwrite to '
                                'replace it, or choose another --out folder')
    if options.opset < MIN_OPSET:
        problems.append(f'--opset {options.opset}: the export needs opset >= {MIN_OPSET} '
                        '(LayerNormalization is opset 17; RoiAlign half_pixel opset 16)')
    if options.shape is not None:
        problems += shape_problems(options.shape)
    if options.batch < 1:
        problems.append(f'--batch {options.batch}: a batch holds at least one image')
    elif options.batch > 1 and options.dynamic:
        problems.append(f'--batch {options.batch} with --dynamic: --dynamic already leaves the '
                        'batch size open; give one of the two')
    if options.fp16 and not torch_support.cpu_runs_float16_convolutions():
        problems.append(f'--fp16: torch {torch.__version__} has no float16 convolution on the '
                        'CPU, which tracing the float16 network needs (torch 2.1 lacks it); '
                        'export with a newer torch (the tested lock has 2.13), or export fp32')
    return problems


def _dataset_meta_value(key: str, trained: Dict[str, Any], cfg: Config) -> Optional[list]:
    """``classes`` or ``palette``: what the checkpoint was trained with (mmengine stores the
    dataset's in its meta, as mmdet / mmseg's ``init_*`` read it), else the config's metainfo."""
    value = trained.get(key)
    if value is None:
        value = config_metainfo(cfg, key)
    if value is None:
        return None
    if key == 'palette':  # a trained dataset's palette may hold numpy integers
        return [[int(c) for c in colour] for colour in value]
    return [str(v) for v in value]


def exportable_module(family: str, model: nn.Module, cfg: Config, dtype: torch.dtype
                      ) -> nn.Module:
    """The module that is traced for ``family`` (backbone, segmentor, detector), around a copy of
    ``model``: normalisation in the graph, GRN on plain ops, ``dtype`` for the network."""
    # GRN on plain ops (no autograd.Function), its norm written for ONNX Runtime (grn_export)
    model = use_export_grn(copy.deepcopy(model))
    pre = preprocessing(cfg)
    if family == 'backbone':
        from .backbone import BackboneForExport
        return BackboneForExport(model.backbone, pre['mean'], pre['std'], dtype).eval()
    if family == 'segmentor':
        from .segmentor import SegmentorForExport
        return SegmentorForExport(model, pre['mean'], pre['std'], dtype).eval()
    from .detector import DetectorForExport, PaddingDetector
    detector = DetectorForExport(model, pre['mean'], pre['std'], dtype=dtype)
    return PaddingDetector(detector, pre['size_divisor'] or TOTAL_STRIDE).eval()


def _names(family: str, wrapper: nn.Module, example: torch.Tensor) -> List[str]:
    if family == 'backbone':
        with torch.no_grad():
            count = len(wrapper(example))
        return [f'features_{i}' for i in range(count)]
    if family == 'segmentor':
        return ['scores', 'labels']
    return ['boxes', 'scores', 'labels', 'masks']


def _dynamic_axes(family: str, names: List[str], dynamic: bool) -> Optional[Dict[str, Dict]]:
    if not dynamic:
        return None
    if family == 'detector':
        axes = {'pixels': {2: 'height', 3: 'width'}}
        axes.update({name: {0: 'detections'} for name in names})
        return axes
    axes = {'pixels': {0: 'batch', 2: 'height', 3: 'width'}}
    for name in names:
        axes[name] = {0: 'batch', 1 if name == 'labels' else 2: 'height_out',
                      2 if name == 'labels' else 3: 'width_out'} if family == 'segmentor' else \
            {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
    return axes


def _output_docs(family: str, names: List[str], model: nn.Module) -> List[Dict[str, Any]]:
    if family == 'backbone':
        return [dict(name=n, dtype='float32', layout='NCHW',
                     meaning=f'feature map of out_indices[{i}] (stride {4 * 2 ** i} for stage '
                             f'{i})') for i, n in enumerate(names)]
    if family == 'segmentor':
        return [dict(name='scores', dtype='float32', shape=['batch', 'classes', 'H', 'W'],
                     meaning='per-pixel class logits at the input size (before softmax)'),
                dict(name='labels', dtype='int64', shape=['batch', 'H', 'W'],
                     meaning='argmax of scores')]
    return [dict(name='boxes', dtype='float32', shape=['N', 4],
                 meaning='x1, y1, x2, y2 in the resized input image; divide by the resize '
                         'scale factor (w, h) for the original image'),
            dict(name='scores', dtype='float32', shape=['N'], meaning='after NMS, descending'),
            dict(name='labels', dtype='int64', shape=['N'], meaning='class index'),
            dict(name='masks', dtype='float32', shape=['N', 'M', 'M'],
                 meaning='mask probabilities of each box at the mask head\'s resolution; paste '
                         'into the box with cnxv2_dense.deploy.detector_postprocess.paste_masks '
                         '(bilinear, as mmdet) and threshold')]


def _to_numpy(outputs) -> List[np.ndarray]:
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return [o.detach().cpu().numpy() for o in outputs]


def example_input(shape: Tuple[int, int], batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Seeded pixels for tracing and the spot check: a smooth image with noise (uniform noise
    alone is far from any real image)."""
    gen = torch.Generator().manual_seed(seed)
    h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing='ij')
    base = torch.stack([255 * xx, 255 * yy, 255 * (1 - xx) * yy])[None].repeat(batch, 1, 1, 1)
    noise = torch.rand(batch, 3, h, w, generator=gen) * 64
    return (base * 0.75 + noise).clamp(0, 255)


def spot_check(family: str, reference: List[np.ndarray], onnx_outputs: List[np.ndarray],
               fp16: bool) -> Dict[str, Any]:
    """ONNX Runtime's outputs against PyTorch's (float32) on the example input."""
    if family == 'detector':
        keys = ('boxes', 'scores', 'labels', 'masks')
        ref = dict(zip(keys, reference))
        test = dict(zip(keys, onnx_outputs))
        ref['masks'] = ref['masks'] >= 0.5
        test['masks'] = test['masks'] >= 0.5
        parity = compare_detections(ref, test, max_score_diff=1e-2 if fp16 else 1e-3)
        return dict(parity.as_dict(), passed=parity.ok, failures=parity.failures)
    limit = DENSE_TOLERANCE_FP16 if fp16 else DENSE_TOLERANCE
    errors = [relative_error(t, r) for t, r in zip(onnx_outputs, reference)
              if np.issubdtype(r.dtype, np.floating)]
    worst = max(errors)
    return dict(max_relative_error=worst, tolerance=limit, passed=bool(worst <= limit))


def run_onnx(onnx_file: Path, pixels: np.ndarray) -> List[np.ndarray]:
    ort = require('onnxruntime')
    session = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    return session.run(None, {'pixels': pixels.astype(np.float32)})


def export_model(config: str, checkpoint: str, out_dir: str,
                 options: Optional[ExportOptions] = None) -> ExportResult:
    """Export ``checkpoint`` (trained with ``config``) to ``out_dir``; see ``tools/export.py``.

    Stops (``SystemExit``, every problem named) before building anything when the checkpoint is
    missing, an output file exists without ``overwrite``, or the options are wrong; and before
    exporting when the model family is not supported or the checkpoint does not fit the config.
    """
    options = options or ExportOptions()
    require('onnx')
    require('onnxruntime')
    stop_on_input_problems(export_problems(config, checkpoint, out_dir, options), config,
                           'the export', 'nothing was written')
    cfg = load_config(config)
    family = 'backbone' if options.backbone_only else model_family(cfg)
    if family == 'detector' and options.batch != 1:
        stop_on_input_problems(
            [f'--batch {options.batch}: the exported detectors take one image per call (their '
             'NMS and mask paste are per image); run images one by one, or export the backbone '
             'alone with --backbone-only --batch N'], config, 'the export', 'nothing was written')
    model = build_model(cfg)
    state, trained = read_trained_checkpoint(checkpoint)
    stop_on_input_problems(checkpoint_fit_problems(model, state, config, checkpoint), config,
                           'the export', 'nothing was written')
    load_exactly(model, state)
    shape = tuple(options.shape) if options.shape is not None else default_shape(cfg, family)
    dtype = torch.float16 if options.fp16 else torch.float32
    wrapper = exportable_module(family, model, cfg, dtype)
    reference_wrapper = (exportable_module(family, model, cfg, torch.float32) if options.fp16
                         else wrapper)
    example = example_input(shape, batch=options.batch)
    names = _names(family, wrapper, example)
    onnx_file, meta_file = output_files(config, out_dir, options)
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(onnx_file) as tmp:
        with torch.no_grad():
            export_torchscript(wrapper, (example,), str(tmp), input_names=['pixels'],
                               output_names=names, opset_version=options.opset,
                               dynamic_axes=_dynamic_axes(family, names, options.dynamic),
                               do_constant_folding=True)
        require('onnx').checker.check_model(str(tmp))
        with torch.no_grad():
            reference = _to_numpy(reference_wrapper(example))
        check = spot_check(family, reference, run_onnx(tmp, example.numpy()), options.fp16)
    dynamic_shape = (['batch' if family != 'detector' else 1, 3, 'height', 'width']
                     if options.dynamic else [options.batch, 3, *shape])
    meta = build_metadata(
        family=family, cfg=cfg, config=str(config), checkpoint=str(checkpoint),
        onnx_file=onnx_file.name, opset=options.opset, fp16=options.fp16,
        input_shape=dynamic_shape, outputs=_output_docs(family, names, model),
        classes=_dataset_meta_value('classes', trained, cfg),
        extra=dict(palette=_dataset_meta_value('palette', trained, cfg),
                   traced_shape=list(shape), test_cfg=_jsonable(_test_cfg(cfg)),
                   align_corners=_align_corners(model), check=check))
    with atomic_output(meta_file) as tmp:
        write_metadata(meta, tmp)
    return ExportResult(onnx_file, meta_file, meta, check)


def _align_corners(model: nn.Module) -> bool:
    head = getattr(model, 'decode_head', None)
    return bool(getattr(head, 'align_corners', False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)
