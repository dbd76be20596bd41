"""Run an exported model in ONNX Runtime, and as an mmengine model the toolboxes' tools accept.

:class:`OnnxModel` is all a deployment needs (numpy and onnxruntime): it reads the metadata
beside the ``.onnx`` file and runs the graph on pixels. :class:`OnnxRuntimeDetector` and
:class:`OnnxRuntimeSegmentor` wrap it as mmengine models, so that ``tools/test.py`` and
``tools/infer.py --backend onnxruntime`` feed it the config's own test pipeline and score it with
the config's own evaluator and visualizer: the same numbers and pictures as the PyTorch model,
computed by ONNX Runtime. What happens outside the graph is what mmdet / mmseg do outside their
networks: padding (segmentors; the detectors pad inside the graph), sliding windows, the
resize back to the original image, mask pasting.
"""
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import InstanceData, PixelData

from ..registry import MODELS
from .metadata import read_metadata
from .model_loading import config_metainfo
from .requirements import require


class OnnxModel:
    """An exported model in an ONNX Runtime session, with its metadata.

    Args:
        onnx_file (str | Path): The ``.onnx`` file ``tools/export.py`` wrote (its ``.json``
            beside it).
        providers (sequence of str, optional): ONNX Runtime execution providers. Defaults to
            ``['CPUExecutionProvider']``.
        threads (int, optional): Intra-op threads; ONNX Runtime's default (one per core) if None.
    """

    def __init__(self, onnx_file: Union[str, Path], providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None) -> None:
        ort = require('onnxruntime')
        self.onnx_file = Path(onnx_file)
        if not self.onnx_file.is_file():
            raise FileNotFoundError(f'{self.onnx_file}: no such ONNX file; export one with '
                                    'tools/export.py CONFIG CHECKPOINT --out DIR')
        self.meta = read_metadata(self.onnx_file)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.onnx_file), options,
                                            providers=list(providers or ['CPUExecutionProvider']))
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_shape = list(self.meta['input']['shape'])

    @property
    def family(self) -> str:
        return self.meta['family']

    @property
    def static_size(self) -> Optional[List[int]]:
        """``[H, W]`` of a static export, None when height and width are dynamic."""
        h, w = self.input_shape[2:]
        return [h, w] if isinstance(h, int) and isinstance(w, int) else None

    @property
    def static_batch(self) -> Optional[int]:
        """The batch size of a static export (``--batch``), None when the batch is dynamic."""
        batch = self.input_shape[0]
        return batch if isinstance(batch, int) else None

    def check_batch(self, batch: int) -> None:
        """Refuse a batch size a static export cannot take, naming the fix."""
        if self.static_batch is not None and batch != self.static_batch:
            raise ValueError(
                f'{self.onnx_file.name} was exported for batches of {self.static_batch} '
                f'(static), got {batch} image(s); feed batches of {self.static_batch}, or export '
                f'with --batch {batch} or --dynamic')

    def check_size(self, height: int, width: int) -> None:
        """Refuse an input size a static export cannot take, naming the fix."""
        size = self.static_size
        if size is not None and [height, width] != size:
            raise ValueError(
                f'{self.onnx_file.name} was exported for {size[0]}x{size[1]} inputs (static), '
                f'got {height}x{width}; export with --dynamic, or with --shape {height} {width}')

    def __call__(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the graph on ``(N, 3, H, W)`` float32 pixels in the metadata's channel order."""
        self.check_batch(pixels.shape[0])
        self.check_size(*pixels.shape[2:])
        outputs = self.session.run(None, {'pixels': np.ascontiguousarray(pixels, np.float32)})
        return dict(zip(self.output_names, outputs))


def _pixels_from_loaded(image: torch.Tensor, channel_order: str) -> torch.Tensor:
    """A ``(3, H, W)`` uint8 BGR image as the toolboxes' pipelines load it -> float pixels in the
    graph's channel order."""
    image = image.float()
    return image[[2, 1, 0]] if channel_order == 'RGB' else image


class _OnnxRuntimeModelBase(BaseModel):
    """The mmengine side: built from the config, runs :class:`OnnxModel` in ``test_step``."""

    def __init__(self, onnx_file: str, dataset_meta: Optional[dict] = None,
                 threads: Optional[int] = None, expected_family: str = '') -> None:
        super().__init__()
        self.onnx = OnnxModel(onnx_file, threads=threads)
        if self.onnx.family != expected_family:
            raise ValueError(f'{onnx_file} holds a {self.onnx.family} export; this config needs '
                             f'a {expected_family} (export it from the same config)')
        self.dataset_meta = dataset_meta or dict(classes=self.onnx.meta.get('classes'))
        self._dummy = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # a device anchor

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = 'predict') -> Any:
        if mode != 'predict':
            raise RuntimeError(f'an ONNX Runtime model only predicts; mode={mode!r} needs the '
                               'PyTorch model')
        return self.predict(inputs, data_samples)

    def test_step(self, data: Union[dict, tuple, list]) -> list:
        data = self.data_preprocessor(data, False)
        return self.predict(data['inputs'], data['data_samples'])

    val_step = test_step

    @property
    def channel_order(self) -> str:
        return self.onnx.meta['input']['channel_order']


@MODELS.register_module()
class OnnxRuntimeSegmentor(_OnnxRuntimeModelBase):
    """An exported segmentor, with mmseg's padding, sliding window and resize to the original.

    Follows mmseg 1.x ``EncoderDecoder``: the preprocessor pads every image bottom / right (to
    ``size`` or a multiple of ``size_divisor``; here with the mean pixel, which normalises to 0),
    ``whole`` mode runs the padded image, ``slide`` mode runs ``crop_size`` windows at
    ``stride`` and averages overlapping logits; the padding is cropped off and the logits are
    resized (bilinear) to the original image, then argmax.
    """

    def __init__(self, onnx_file: str, dataset_meta: Optional[dict] = None,
                 threads: Optional[int] = None, data_preprocessor: Optional[dict] = None
                 ) -> None:
        # NOTE: data_preprocessor, if the Runner hands the config's one, is not used: the
        # graph normalises, and padding happens here as the toolbox would pad
        super().__init__(onnx_file, dataset_meta, threads, 'segmentor')
        meta = self.onnx.meta
        self.test_cfg = meta.get('test_cfg') or {}
        pad = meta['input']['padding']
        self.pad_to_size = pad.get('to_size')
        self.size_divisor = pad.get('to_multiple_of')
        self.mean = torch.tensor(meta['input']['mean']).view(3, 1, 1)
        self.align_corners = bool(meta.get('align_corners', False))

    def _pad(self, pixels: torch.Tensor) -> torch.Tensor:
        h, w = pixels.shape[1:]
        th, tw = h, w
        if self.pad_to_size:
            th, tw = max(h, self.pad_to_size[0]), max(w, self.pad_to_size[1])
        elif self.size_divisor:
            th = -(-h // self.size_divisor) * self.size_divisor
            tw = -(-w // self.size_divisor) * self.size_divisor
        if (th, tw) == (h, w):
            return pixels
        padded = self.mean.expand(3, th, tw).clone()
        padded[:, :h, :w] = pixels
        return padded

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.onnx(pixels.numpy())['scores'])

    def _slide(self, pixels: torch.Tensor) -> torch.Tensor:
        """mmseg's ``slide_inference`` on one padded image ``(1, 3, H, W)``."""
        h_stride, w_stride = self.test_cfg['stride']
        h_crop, w_crop = self.test_cfg['crop_size']
        _, _, h_img, w_img = pixels.shape
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        preds, counts = None, torch.zeros(1, 1, h_img, w_img)
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y1, x1 = h_idx * h_stride, w_idx * w_stride
                y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                crop_logits = self._run(pixels[:, :, y1:y2, x1:x2])
                if preds is None:
                    preds = torch.zeros(1, crop_logits.shape[1], h_img, w_img)
                preds += F.pad(crop_logits, (x1, w_img - x2, y1, h_img - y2))
                counts[:, :, y1:y2, x1:x2] += 1
        return preds / counts

    def predict(self, inputs: List[torch.Tensor], data_samples: list) -> list:
        from mmseg.structures import SegDataSample
        results = []
        for image, sample in zip(inputs, data_samples or [None] * len(inputs)):
            sample = sample if sample is not None else SegDataSample()
            pixels = _pixels_from_loaded(image.cpu(), self.channel_order)
            h, w = pixels.shape[1:]
            padded = self._pad(pixels)[None]
            if self.test_cfg.get('mode') == 'slide':
                logits = self._slide(padded)
            else:
                logits = self._run(padded)
            logits = logits[:, :, :h, :w]  # crop the padding off
            ori_shape = sample.metainfo.get('ori_shape', (h, w))[:2]
            if sample.metainfo.get('flip', False):
                raise NotImplementedError('flip test-time augmentation is not supported by the '
                                          'ONNX Runtime backend; test without --tta')
            logits = F.interpolate(logits, size=tuple(ori_shape), mode='bilinear',
                                   align_corners=self.align_corners)[0]
            sample.set_data(dict(seg_logits=PixelData(data=logits),
                                 pred_sem_seg=PixelData(data=logits.argmax(dim=0, keepdim=True))))
            results.append(sample)
        return results


@MODELS.register_module()
class OnnxRuntimeDetector(_OnnxRuntimeModelBase):
    """An exported Mask R-CNN / Cascade Mask R-CNN, with mmdet's rescale and mask pasting.

    The graph takes one resized, unpadded image and pads it itself; boxes come back in the
    resized image and are divided by the resize's scale factor, masks are pasted into the
    original image (:mod:`cnxv2_dense.deploy.detector_postprocess`), as mmdet's
    ``predict(rescale=True)`` does.
    """

    def __init__(self, onnx_file: str, dataset_meta: Optional[dict] = None,
                 threads: Optional[int] = None, data_preprocessor: Optional[dict] = None
                 ) -> None:
        # NOTE: data_preprocessor, if the Runner hands the config's one, is not used: the
        # graph normalises, and padding happens here as the toolbox would pad
        super().__init__(onnx_file, dataset_meta, threads, 'detector')
        rcnn = (self.onnx.meta.get('test_cfg') or {}).get('rcnn') or {}
        self.mask_threshold = float(rcnn.get('mask_thr_binary', 0.5))

    def predict(self, inputs: List[torch.Tensor], data_samples: list) -> list:
        from mmdet.structures import DetDataSample
        from .detector_postprocess import paste_masks, rescale_detections
        results = []
        for image, sample in zip(inputs, data_samples or [None] * len(inputs)):
            sample = sample if sample is not None else DetDataSample()
            pixels = _pixels_from_loaded(image.cpu(), self.channel_order)[None].numpy()
            out = self.onnx(pixels)
            h, w = pixels.shape[2:]
            scale_factor = sample.metainfo.get('scale_factor', (1.0, 1.0))
            ori_h, ori_w = sample.metainfo.get('ori_shape', (h, w))[:2]
            boxes = rescale_detections(out['boxes'], scale_factor)
            masks = paste_masks(out['masks'], boxes, ori_h, ori_w, self.mask_threshold)
            instances = InstanceData()
            instances.bboxes = torch.from_numpy(np.ascontiguousarray(boxes, np.float32))
            instances.scores = torch.from_numpy(np.ascontiguousarray(out['scores'], np.float32))
            instances.labels = torch.from_numpy(np.ascontiguousarray(out['labels'], np.int64))
            instances.masks = torch.from_numpy(np.ascontiguousarray(masks, bool))
            sample.pred_instances = instances
            results.append(sample)
        return results


def dataset_meta_of(onnx_file: str, cfg) -> dict:
    """``classes`` and ``palette`` from the export's metadata (what the checkpoint was trained
    with), the palette from the config's dataset for an export that has none."""
    meta = read_metadata(onnx_file)
    dataset_meta = dict(classes=tuple(meta.get('classes') or ()))
    palette = meta.get('palette') or config_metainfo(cfg, 'palette')
    if palette is not None:
        dataset_meta['palette'] = [tuple(c) for c in palette]
    return dataset_meta


def build_onnx_model(onnx_file: str, cfg, threads: Optional[int] = None) -> _OnnxRuntimeModelBase:
    """The ONNX Runtime model of ``onnx_file`` for ``cfg``'s toolbox, ready for mmdet's
    ``inference_detector`` / mmseg's ``inference_model`` (``model.cfg`` set, scope set)."""
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    family = read_metadata(onnx_file)['family']
    if family not in ('detector', 'segmentor'):
        raise ValueError(f'{onnx_file} holds a {family} export; only detector and segmentor '
                         'exports make predictions to draw or score')
    model = MODELS.build(onnx_model_cfg(onnx_file, family, dataset_meta_of(onnx_file, cfg),
                                        threads))
    model.cfg = cfg
    return model.eval()


def onnx_model_cfg(onnx_file: str, family: str, dataset_meta: Optional[dict] = None,
                   threads: Optional[int] = None) -> dict:
    """The ``cfg.model`` that makes a toolbox's Runner test an ONNX file."""
    model_type = {'detector': 'cnxv2_dense.OnnxRuntimeDetector',
                  'segmentor': 'cnxv2_dense.OnnxRuntimeSegmentor'}[family]
    return dict(type=model_type, onnx_file=os.fspath(onnx_file), dataset_meta=dataset_meta,
                threads=threads)
