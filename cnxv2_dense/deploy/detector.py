"""Mask R-CNN and Cascade Mask R-CNN (mmdet 3.3) as one module that exports to plain ONNX.

:class:`DetectorForExport` wraps a built mmdet ``MaskRCNN`` / ``CascadeRCNN`` and reproduces its
``predict(..., rescale=False)`` for one image, step by step: the model's own backbone, neck, RPN
head, box heads and mask heads run their ``forward``; everything between them (anchors, RPN
post-processing, RoI pooling, box decoding, multi-class NMS, picking each detection's mask
channel) is written here with tensor ops and the standard-ONNX functions of
:mod:`cnxv2_dense.deploy.onnx_ops`, so the exported graph needs no custom-ops library.

Graph interface (batch size 1):

* ``pixels``: ``(1, 3, H, W)`` float32 RGB 0...255, resized as the test pipeline does and padded
  (with the mean, see :mod:`cnxv2_dense.deploy.graph_input`) to the size the model expects.
* ``img_shape``: ``(2,)`` int64 ``(h, w)`` of the resized image before padding (mmdet's
  ``img_shape``). Boxes are clipped to it, as mmdet clips them. Optional: export without it and
  the graph clips to the padded ``(H, W)`` (exact only where nothing was padded).
* outputs ``boxes`` ``(N, 4)`` float32 ``x1, y1, x2, y2`` in the resized image's pixels,
  ``scores`` ``(N,)`` float32, ``labels`` ``(N,)`` int64, ``masks`` ``(N, M, M)`` float32
  probabilities of each detection's label over its box (M = the mask head's output size, 28).
  ``N`` may be 0. :mod:`cnxv2_dense.deploy.detector_postprocess` (numpy only) rescales boxes to
  the original image and pastes the masks.

H and W may be dynamic: anchors and the clip box come from runtime shapes.
"""
import copy
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .graph_input import NormalizeInGraph
from .precision import to_network_dtype
from .onnx_ops import MIN_OPSET, batched_nms, multi_level_roi_align, topk_up_to
from .torch_support import export_torchscript

#: Names of the exported graph's inputs and outputs, in order.
INPUT_NAMES = ('pixels', 'img_shape')
OUTPUT_NAMES = ('boxes', 'scores', 'labels', 'masks')

# DeltaXYWHBBoxCoder.decode's default, which mmdet's RPN and box heads never override.
WH_RATIO_CLIP = 16 / 1000


class _DeltaCoder(NamedTuple):
    """What ``DeltaXYWHBBoxCoder.decode`` needs to know."""
    means: Tuple[float, ...]
    stds: Tuple[float, ...]
    clip_border: bool
    add_ctr_clamp: bool
    ctr_clamp: float


class _RoIPooling(NamedTuple):
    """What ``SingleRoIExtractor`` with ``RoIAlign`` layers does."""
    spatial_scales: Tuple[float, ...]
    output_size: Tuple[int, int]
    sampling_ratio: int
    aligned: bool
    finest_scale: float


def _nms_iou(nms_cfg: dict, where: str) -> Tuple[float, bool]:
    """IoU threshold and ``class_agnostic`` of an ``nms`` config; other NMS types fail."""
    if nms_cfg.get('type', 'nms') != 'nms':
        raise ValueError(f"{where}.nms.type is {nms_cfg.get('type')!r}: only 'nms' has a "
                         "standard ONNX op (NonMaxSuppression); set type='nms' to export")
    return float(nms_cfg['iou_threshold']), bool(nms_cfg.get('class_agnostic', False))


def _delta_coder(coder, where: str) -> _DeltaCoder:
    from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
    if type(coder) is not DeltaXYWHBBoxCoder:
        raise TypeError(f'{where} uses {type(coder).__name__}; DetectorForExport decodes '
                        'DeltaXYWHBBoxCoder deltas only')
    return _DeltaCoder(tuple(float(m) for m in coder.means), tuple(float(s) for s in coder.stds),
                       bool(coder.clip_border), bool(coder.add_ctr_clamp),
                       float(coder.ctr_clamp))


def _roi_pooling(extractor, where: str) -> _RoIPooling:
    from mmcv.ops import RoIAlign
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    if type(extractor) is not SingleRoIExtractor:
        raise TypeError(f'{where} is {type(extractor).__name__}; DetectorForExport exports '
                        'SingleRoIExtractor only')
    layers = list(extractor.roi_layers)
    if not all(isinstance(layer, RoIAlign) for layer in layers):
        raise TypeError(f"{where}.roi_layer must be RoIAlign (ONNX RoiAlign), got "
                        f"{sorted({type(layer).__name__ for layer in layers})}")
    settings = {(tuple(layer.output_size), int(layer.sampling_ratio), bool(layer.aligned),
                 layer.pool_mode) for layer in layers}
    if len(settings) != 1:
        raise ValueError(f'{where}: the RoIAlign layers differ ({settings})')
    output_size, sampling_ratio, aligned, pool_mode = settings.pop()
    if pool_mode != 'avg':
        raise ValueError(f"{where}.roi_layer.pool_mode is {pool_mode!r}; only 'avg' matches "
                         "ONNX RoiAlign (set pool_mode='avg')")
    return _RoIPooling(tuple(float(layer.spatial_scale) for layer in layers), output_size,
                       sampling_ratio, aligned, float(extractor.finest_scale))


def delta2bbox(priors: Tensor, deltas: Tensor, coder: _DeltaCoder,
               clip_max: Optional[Tensor]) -> Tensor:
    """``DeltaXYWHBBoxCoder.decode`` (mmdet's ``delta2bbox``) for ``(K, 4)`` priors and deltas.

    Same operations in the same order as mmdet, so float32 results are the same bits.

    Args:
        priors (Tensor): ``(K, 4)`` boxes ``x1, y1, x2, y2``.
        deltas (Tensor): ``(K, 4)`` normalised ``dx, dy, dw, dh``.
        coder (_DeltaCoder): The coder's settings.
        clip_max (Tensor, optional): ``(4,)`` ``(w, h, w, h)`` to clip to (when the coder clips).

    Returns:
        Tensor: ``(K, 4)`` decoded boxes.
    """
    denorm = deltas * deltas.new_tensor(coder.stds) + deltas.new_tensor(coder.means)
    dxy, dwh = denorm[:, :2], denorm[:, 2:]
    pxy = (priors[:, :2] + priors[:, 2:]) * 0.5
    pwh = priors[:, 2:] - priors[:, :2]
    dxy_wh = pwh * dxy
    max_ratio = abs(math.log(WH_RATIO_CLIP))
    if coder.add_ctr_clamp:
        dxy_wh = torch.clamp(dxy_wh, max=coder.ctr_clamp, min=-coder.ctr_clamp)
        dwh = torch.clamp(dwh, max=max_ratio)
    else:
        dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
    gxy = pxy + dxy_wh
    gwh = pwh * dwh.exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if coder.clip_border and clip_max is not None:
        boxes = torch.minimum(boxes.clamp(min=0), clip_max)
    return boxes


class DetectorForExport(nn.Module):
    """An mmdet Mask R-CNN / Cascade Mask R-CNN as ``pixels -> boxes, scores, labels, masks``.

    Reproduces ``model.predict(inputs, data_samples, rescale=False)`` for one image (see the
    module docstring for the interface). Post-processing (decoding, NMS, scores) always runs in
    float32; with ``dtype=torch.float16`` the backbone, neck and heads run in half precision,
    RoI Align pools float32 features and hands the heads ``dtype`` again.

    Supported: ``TwoStageDetector`` with an ``RPNHead`` on an ``AnchorGenerator``, a
    ``StandardRoIHead`` or ``CascadeRoIHead`` with box and mask heads, ``SingleRoIExtractor`` +
    ``RoIAlign`` (avg), ``DeltaXYWHBBoxCoder``, softmax box classification and plain ``nms``.
    Anything else fails with a message naming the part.

    Args:
        model (nn.Module): The built mmdet detector (weights loaded). Its modules are shared
            for float32; for another ``dtype`` they are copied, so ``model`` is left as it was.
        mean (sequence of float): The data preprocessor's mean, RGB order.
        std (sequence of float): The data preprocessor's std, RGB order.
        dtype (torch.dtype): Dtype of the network (float32 or float16). Defaults to float32.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        from mmdet.models.detectors import TwoStageDetector
        from mmdet.models.dense_heads import RPNHead
        from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
        from mmdet.models.task_modules.prior_generators import AnchorGenerator
        if dtype not in (torch.float32, torch.float16):
            raise ValueError(f'dtype must be torch.float32 or torch.float16, got {dtype}')
        if not isinstance(model, TwoStageDetector):
            raise TypeError(f'DetectorForExport needs an mmdet TwoStageDetector (MaskRCNN, '
                            f'CascadeRCNN), got {type(model).__name__}')
        if not isinstance(model.rpn_head, RPNHead):
            raise TypeError(f'rpn_head is {type(model.rpn_head).__name__}; only RPNHead exports')
        roi_head = model.roi_head
        if type(roi_head) not in (StandardRoIHead, CascadeRoIHead):
            raise TypeError(f'roi_head is {type(roi_head).__name__}; DetectorForExport exports '
                            'StandardRoIHead (Mask R-CNN) and CascadeRoIHead (Cascade Mask R-CNN)')
        if not roi_head.with_mask:
            raise ValueError('the roi_head has no mask head; DetectorForExport exports '
                             'instance segmentation models (Mask R-CNN, Cascade Mask R-CNN)')
        if roi_head.with_shared_head:
            raise ValueError('roi_head.shared_head is not supported (FPN models have none)')
        prior_generator = model.rpn_head.prior_generator
        if (not isinstance(prior_generator, AnchorGenerator) or
                type(prior_generator).single_level_grid_priors
                is not AnchorGenerator.single_level_grid_priors):
            raise TypeError(f'rpn_head.anchor_generator is {type(prior_generator).__name__}; '
                            'only AnchorGenerator grids are reproduced')
        if dtype != torch.float32:
            model = copy.deepcopy(model)
            roi_head = model.roi_head
        self.dtype = dtype
        self.normalize = NormalizeInGraph(mean, std, dtype)

        # the network: the model's own modules, run through their forward
        self.backbone = model.backbone
        self.neck = model.neck if model.with_neck else nn.Identity()
        self.rpn_head = model.rpn_head
        cascade = isinstance(roi_head, CascadeRoIHead)
        as_list = (lambda m: list(m)) if cascade else (lambda m: [m])
        self.bbox_heads = nn.ModuleList(as_list(roi_head.bbox_head))
        self.mask_heads = nn.ModuleList(as_list(roi_head.mask_head))
        bbox_extractors = as_list(roi_head.bbox_roi_extractor)
        mask_extractors = as_list(roi_head.mask_roi_extractor)
        for module in (self.backbone, self.neck, self.rpn_head, self.bbox_heads, self.mask_heads):
            to_network_dtype(module, dtype)  # GRN / LayerNorm keep float32 parameters

        # RPN settings
        rpn = self.rpn_head
        self.rpn_sigmoid = bool(rpn.use_sigmoid_cls)
        self.rpn_cls_channels = int(rpn.cls_out_channels)
        self.rpn_coder = _delta_coder(rpn.bbox_coder, 'rpn_head.bbox_coder')
        rpn_cfg = rpn.test_cfg
        self.rpn_nms_pre = int(rpn_cfg.get('nms_pre', -1))
        self.rpn_max_per_img = int(rpn_cfg.get('max_per_img', -1))
        self.rpn_min_bbox_size = float(rpn_cfg.get('min_bbox_size', -1))
        self.rpn_iou, self.rpn_class_agnostic = _nms_iou(rpn_cfg.nms, 'test_cfg.rpn')
        self.anchor_strides = [tuple(float(s) for s in stride)
                               for stride in prior_generator.strides]
        for level, anchors in enumerate(prior_generator.base_anchors):
            self.register_buffer(f'base_anchors_{level}', anchors.float().clone(),
                                 persistent=False)

        # box and mask head settings, one entry per stage
        self.bbox_coders = [_delta_coder(head.bbox_coder, f'bbox_head[{i}].bbox_coder')
                            for i, head in enumerate(self.bbox_heads)]
        for i, head in enumerate(self.bbox_heads):
            if head.custom_cls_channels or head.custom_activation:
                raise ValueError(f'bbox_head[{i}] uses {type(head.loss_cls).__name__}\'s own '
                                 'score activation; only softmax scores are exported')
            if not (head.with_cls and head.with_reg):
                raise ValueError(f'bbox_head[{i}] must classify and regress')
        self.bbox_pools = [_roi_pooling(e, f'bbox_roi_extractor[{i}]')
                           for i, e in enumerate(bbox_extractors)]
        self.mask_pools = [_roi_pooling(e, f'mask_roi_extractor[{i}]')
                           for i, e in enumerate(mask_extractors)]
        rcnn_cfg = roi_head.test_cfg
        self.score_thr = float(rcnn_cfg.score_thr)
        self.max_per_img = int(rcnn_cfg.max_per_img)
        self.rcnn_iou, self.rcnn_class_agnostic = _nms_iou(rcnn_cfg.nms, 'test_cfg.rcnn')
        self.eval()

    # --- the steps of predict(), in order --------------------------------------------------

    def _anchors(self, level: int, feature: Tensor) -> Tensor:
        """``AnchorGenerator.single_level_grid_priors`` from the feature map's runtime size."""
        base = getattr(self, f'base_anchors_{level}')  # (A, 4)
        stride_w, stride_h = self.anchor_strides[level]
        height, width = feature.shape[-2:]
        shift_x = torch.arange(0, width, device=feature.device).to(torch.float32) * stride_w
        shift_y = torch.arange(0, height, device=feature.device).to(torch.float32) * stride_h
        shift_yy, shift_xx = torch.meshgrid(shift_y, shift_x, indexing='ij')
        shift_xx, shift_yy = shift_xx.reshape(-1), shift_yy.reshape(-1)
        shifts = torch.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1)
        # (1, A, 4) + (H * W, 1, 4): all A anchors of location (0, 0), then (0, 1), ...
        return (base[None, :, :] + shifts[:, None, :]).reshape(-1, 4)

    def _proposals(self, feats: Sequence[Tensor], clip_max: Tensor) -> Tensor:
        """``RPNHead.predict`` (``_predict_by_feat_single`` + ``_bbox_post_process``)."""
        cls_scores, bbox_preds = self.rpn_head(feats)
        mlvl_scores, mlvl_deltas, mlvl_anchors, level_ids = [], [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            anchors = self._anchors(level, cls_score)
            # (A * c, H, W) -> (H * W * A, c), the order of the anchors
            cls_score = cls_score[0].float().permute(1, 2, 0).reshape(-1, self.rpn_cls_channels)
            deltas = bbox_pred[0].float().permute(1, 2, 0).reshape(-1, 4)
            if self.rpn_sigmoid:
                scores = cls_score.sigmoid().reshape(-1)
            else:
                scores = cls_score.softmax(-1)[:, :-1].reshape(-1)
            if self.rpn_nms_pre > 0:
                scores, inds = topk_up_to(scores, self.rpn_nms_pre)
                deltas, anchors = deltas.index_select(0, inds), anchors.index_select(0, inds)
            mlvl_scores.append(scores)
            mlvl_deltas.append(deltas)
            mlvl_anchors.append(anchors)
            level_ids.append(torch.full_like(scores, level, dtype=torch.long))
        scores = torch.cat(mlvl_scores)
        boxes = delta2bbox(torch.cat(mlvl_anchors), torch.cat(mlvl_deltas), self.rpn_coder,
                           clip_max)
        level_ids = torch.cat(level_ids)
        if self.rpn_min_bbox_size >= 0:
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            valid = torch.nonzero((w > self.rpn_min_bbox_size) & (h > self.rpn_min_bbox_size))
            valid = valid.squeeze(1)
            boxes, scores = boxes.index_select(0, valid), scores.index_select(0, valid)
            level_ids = level_ids.index_select(0, valid)
        keep = batched_nms(boxes, scores, level_ids, self.rpn_iou, self.rpn_max_per_img,
                           self.rpn_class_agnostic)
        return boxes.index_select(0, keep)

    def _pool(self, feats: Sequence[Tensor], boxes: Tensor, pooling: _RoIPooling) -> Tensor:
        """``SingleRoIExtractor`` on float32 features; returns the heads' dtype."""
        levels = [f.float() for f in feats[:len(pooling.spatial_scales)]]
        pooled = multi_level_roi_align(levels, boxes, pooling.spatial_scales,
                                       pooling.output_size, pooling.sampling_ratio,
                                       pooling.aligned, pooling.finest_scale)
        return pooled.to(self.dtype)

    @staticmethod
    def _class_deltas(head: nn.Module, bbox_pred: Tensor, labels: Tensor) -> Tensor:
        """``BBoxHead.regress_by_class``'s pick of each RoI's ``labels`` deltas: ``(K, 4)``."""
        if head.reg_class_agnostic:
            return bbox_pred
        inds = labels[:, None] * 4 + torch.arange(4, device=labels.device)[None, :]
        return torch.gather(bbox_pred, 1, inds)

    def _detections(self, feats: Sequence[Tensor], proposals: Tensor,
                    clip_max: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """The box branch: ``StandardRoIHead.predict_bbox`` or, with several stages,
        ``CascadeRoIHead.predict_bbox`` (``_refine_roi``), then ``BBoxHead.predict_by_feat``."""
        rois = proposals
        stage_logits: List[Tensor] = []
        last = len(self.bbox_heads) - 1
        for stage, (head, pooling) in enumerate(zip(self.bbox_heads, self.bbox_pools)):
            cls_score, bbox_pred = head(self._pool(feats, rois, pooling))
            cls_score, bbox_pred = cls_score.float(), bbox_pred.float()
            stage_logits.append(cls_score)
            if stage < last:  # cascade: regress each RoI by its best foreground class
                labels = cls_score[:, :-1].argmax(dim=1)
                rois = delta2bbox(rois, self._class_deltas(head, bbox_pred, labels),
                                  self.bbox_coders[stage], clip_max)
        # CascadeRoIHead averages the stages' logits (sum(...) / float(num_stages))
        logits = stage_logits[0]
        for more in stage_logits[1:]:
            logits = logits + more
        if len(stage_logits) > 1:
            logits = logits / float(len(stage_logits))
        scores = F.softmax(logits, dim=-1)

        head, coder = self.bbox_heads[last], self.bbox_coders[last]
        num_classes = int(head.num_classes)
        num_rois = rois.shape[0]
        if head.reg_class_agnostic:
            boxes = delta2bbox(rois, bbox_pred.reshape(-1, 4), coder, clip_max)
            boxes = boxes[:, None, :].expand(num_rois, num_classes, 4)
        else:
            priors = rois[:, None, :].expand(num_rois, num_classes, 4).reshape(-1, 4)
            boxes = delta2bbox(priors, bbox_pred.reshape(-1, 4), coder, clip_max)
        return self._multiclass_nms(boxes.reshape(-1, 4), scores[:, :-1])

    def _multiclass_nms(self, boxes: Tensor, scores: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """mmdet's ``multiclass_nms``: ``(K * C, 4)`` boxes and ``(K, C)`` foreground scores."""
        labels = torch.arange(scores.shape[1], device=scores.device)[None, :].expand_as(scores)
        scores, labels = scores.reshape(-1), labels.reshape(-1)
        valid = torch.nonzero(scores > self.score_thr).squeeze(1)
        boxes, scores = boxes.index_select(0, valid), scores.index_select(0, valid)
        labels = labels.index_select(0, valid)
        keep = batched_nms(boxes, scores, labels, self.rcnn_iou, self.max_per_img,
                           self.rcnn_class_agnostic)
        return (boxes.index_select(0, keep), scores.index_select(0, keep),
                labels.index_select(0, keep))

    def _masks(self, feats: Sequence[Tensor], boxes: Tensor, labels: Tensor) -> Tensor:
        """``predict_mask``: sigmoid of the mask head(s) (mean over cascade stages), then each
        detection's label channel."""
        probs = [head(self._pool(feats, boxes, pooling)).float().sigmoid()
                 for head, pooling in zip(self.mask_heads, self.mask_pools)]
        # CascadeRoIHead: merge_aug_masks, the mean of the stages' sigmoids
        probs = probs[0] if len(probs) == 1 else torch.stack(probs).mean(dim=0)
        if self.mask_heads[-1].class_agnostic:
            return probs[:, 0]
        index = labels[:, None, None, None].expand(-1, 1, probs.shape[2], probs.shape[3])
        return torch.gather(probs, 1, index)[:, 0]

    def forward(self, pixels: Tensor, img_shape: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Detect instances in one image.

        Args:
            pixels (Tensor): ``(1, 3, H, W)`` float32 RGB 0...255, resized and padded.
            img_shape (Tensor, optional): ``(2,)`` int64 ``(h, w)`` of the image before padding;
                None: ``(H, W)``.

        Returns:
            tuple[Tensor, Tensor, Tensor, Tensor]: ``boxes (N, 4)``, ``scores (N,)``,
            ``labels (N,)`` int64 and ``masks (N, M, M)`` probabilities.
        """
        if pixels.dim() != 4 or pixels.shape[0] != 1 or pixels.shape[1] != 3:
            raise ValueError(f'pixels must be (1, 3, H, W) (batch size 1), got '
                             f'{tuple(pixels.shape)}')
        if img_shape is None:
            img_shape = torch._shape_as_tensor(pixels)[2:]
        h_w = img_shape.to(torch.float32)
        clip_max = h_w.index_select(0, torch.tensor([1, 0, 1, 0], device=h_w.device))
        feats = self.neck(self.backbone(self.normalize(pixels)))
        proposals = self._proposals(feats, clip_max)
        boxes, scores, labels = self._detections(feats, proposals, clip_max)
        return boxes, scores, labels, self._masks(feats, boxes, labels)


class PaddingDetector(nn.Module):
    """:class:`DetectorForExport` behind in-graph padding: ``pixels (1, 3, h, w)`` unpadded.

    The graph pads bottom / right to a multiple of ``size_divisor`` after normalising (value 0,
    as mmdet's preprocessor pads a batch of one) and clips boxes to the unpadded ``(h, w)``, so
    a user feeds the resized image alone and gets mmdet's boxes for any size.
    """

    def __init__(self, detector: DetectorForExport, size_divisor: int = 32) -> None:
        super().__init__()
        self.detector = detector
        self.size_divisor = size_divisor

    def forward(self, pixels: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        img_shape = torch._shape_as_tensor(pixels)[2:]
        padded_shape = torch.div(img_shape + self.size_divisor - 1, self.size_divisor,
                                 rounding_mode='floor') * self.size_divisor
        pad_h, pad_w = (padded_shape - img_shape).unbind(0)
        # pad with the mean pixel, which the graph normalises to exactly 0
        mean = self.detector.normalize.mean
        padded = F.pad(pixels - mean, [0, pad_w, 0, pad_h]) + mean
        return self.detector(padded, img_shape)


def export_onnx(detector: DetectorForExport, pixels: Tensor, path: str,
                img_shape: Optional[Tensor] = None, opset: int = 17,
                dynamic: bool = False) -> None:
    """Export with the TorchScript exporter, the names of :data:`INPUT_NAMES` and
    :data:`OUTPUT_NAMES` and the number of detections as a dynamic axis.

    Args:
        detector (DetectorForExport): The module (in eval mode).
        pixels (Tensor): An example ``(1, 3, H, W)`` input; its size is the graph's when not
            ``dynamic``.
        path (str): The ``.onnx`` file to write.
        img_shape (Tensor, optional): An example ``(2,)`` int64 ``img_shape``; given, the graph
            takes it as its second input. Defaults to None (one input).
        opset (int): ONNX opset, at least :data:`~cnxv2_dense.deploy.onnx_ops.MIN_OPSET`.
            Defaults to 17.
        dynamic (bool): Make H and W of ``pixels`` dynamic. Defaults to False.
    """
    if opset < MIN_OPSET:
        raise ValueError(f'opset {opset} is too old: RoiAlign with half-pixel coordinates '
                         f'(mmcv aligned=True) needs opset >= {MIN_OPSET}')
    args = (pixels,) if img_shape is None else (pixels, img_shape)
    dynamic_axes = {name: {0: 'num_detections'} for name in OUTPUT_NAMES}
    if dynamic:
        dynamic_axes['pixels'] = {2: 'height', 3: 'width'}
    with torch.no_grad():
        export_torchscript(detector.eval(), args, path, input_names=list(INPUT_NAMES[:len(args)]),
                           output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
                           opset_version=opset)
