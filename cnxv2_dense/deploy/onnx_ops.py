"""Two-stage detector post-processing that exports to **standard** ONNX ops.

A deployed detector must run in a stock ONNX Runtime, without a custom-ops library (mmdeploy's
is built for onnxruntime 1.15: open-mmlab/mmdeploy, docs/en/05-supported-backends/onnxruntime.md;
docs/deploy.md says more). Each op here is a
:class:`torch.autograd.Function` whose ``forward`` computes with mmcv's own op (so eager results,
and the values the TorchScript tracer sees, are mmdet's) and whose ``symbolic`` emits the
standard ONNX op that computes the same thing:

=====================  ===========================  ==========================================
function               ONNX op (opset)              mmcv / mmdet semantics it reproduces
=====================  ===========================  ==========================================
:func:`nms`            NonMaxSuppression (10)       ``mmcv.ops.nms``: IoU without the legacy
                                                    +1, a box is suppressed when its IoU with
                                                    a kept one is ``> iou_threshold``; kept
                                                    indices in descending score order
:func:`batched_nms`    (offsets +) :func:`nms`      ``mmcv.ops.batched_nms``: one NMS over all
                                                    groups, boxes shifted apart by
                                                    ``idx * (max coordinate + 1)``
:func:`roi_align`      RoiAlign (16, for            ``mmcv.ops.roi_align``, ``pool_mode='avg'``;
                       ``coordinate_transformation  ``aligned=True`` is ``half_pixel`` (no
                       _mode``)                     1-pixel minimum RoI size), ``aligned=False``
                                                    is ``output_half_pixel``; ``sampling_ratio
                                                    = 0`` is adaptive (``ceil(roi / bin)``)
:func:`topk_up_to`     TopK (10, k as an input)     ``scores.sort(descending=True)[:k]`` with
                                                    ``k`` capped at the number of scores
=====================  ===========================  ==========================================

:func:`multi_level_roi_align` (plain torch ops around :func:`roi_align`) is mmdet's
``SingleRoIExtractor``: each RoI is pooled from the FPN level picked by
:func:`map_roi_levels`.

The symbolic functions use opset-13 forms (``Unsqueeze`` with axes as an input), and
``half_pixel`` RoiAlign needs opset 16: export with ``opset_version >= MIN_OPSET`` and
``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter, which calls ``symbolic``).
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor
from torch.autograd import Function

#: The lowest opset the symbolic functions below emit valid graphs for (RoiAlign's
#: ``coordinate_transformation_mode`` attribute appeared in opset 16).
MIN_OPSET = 16


def _const(g, value, dtype: torch.dtype):
    return g.op('Constant', value_t=torch.tensor(value, dtype=dtype))


class _NMS(Function):
    """``mmcv.ops.nms`` (single class) -> ONNX ``NonMaxSuppression`` with one batch, one class."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float,
                max_num: int) -> Tensor:
        if boxes.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=boxes.device)
        from mmcv.ops import nms as mmcv_nms  # heavy, and only needed to export
        _, keep = mmcv_nms(boxes, scores, iou_threshold)
        return keep[:max_num] if max_num > 0 else keep

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, max_num: int):
        # NonMaxSuppression wants boxes (B, K, 4) and scores (B, classes, K). It accepts the
        # corners in either order (it takes min / max per axis), so x1, y1, x2, y2 works, and
        # IoU is symmetric in x and y. max_output_boxes_per_class = 0 would select nothing: with
        # no cap, pass K itself.
        max_out = (_const(g, [max_num], torch.long) if max_num > 0 else g.op('Shape', scores))
        selected = g.op('NonMaxSuppression',
                        g.op('Unsqueeze', boxes, _const(g, [0], torch.long)),
                        g.op('Unsqueeze', scores, _const(g, [0, 1], torch.long)),
                        max_out, _const(g, [iou_threshold], torch.float))
        # selected: (num_kept, 3) rows of (batch, class, box index), in descending score order
        return g.op('Gather', selected, _const(g, 2, torch.long), axis_i=1)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, max_num: int = -1) -> Tensor:
    """Greedy NMS of one class, as ``mmcv.ops.nms``; exports to ``NonMaxSuppression``.

    Args:
        boxes (Tensor): ``(K, 4)`` float32 boxes ``x1, y1, x2, y2``.
        scores (Tensor): ``(K,)`` float32 scores.
        iou_threshold (float): A box is dropped when its IoU with a kept box is greater.
        max_num (int): Keep at most this many (the highest scoring); ``<= 0``: no cap.
            Defaults to -1.

    Returns:
        Tensor: ``(num_kept,)`` int64 indices into ``boxes``, highest score first.
    """
    return _NMS.apply(boxes, scores, float(iou_threshold), int(max_num))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                max_num: int = -1, class_agnostic: bool = False) -> Tensor:
    """NMS within each group of ``idxs`` (a class, an FPN level), as ``mmcv.ops.batched_nms``.

    Uses mmcv's trick: every box is shifted by ``idx * (max coordinate + 1)`` so boxes of
    different groups never overlap, and one NMS runs over all. (mmcv runs one NMS per group when
    there are 10,000 boxes or more, ``split_thr``; the kept set is the same up to float
    rounding.) The max coordinate is taken together with 0, so an empty input needs no branch:
    clipped boxes are never negative, where this is mmcv's ``boxes.max()``.

    Args:
        boxes (Tensor): ``(K, 4)`` float32 boxes.
        scores (Tensor): ``(K,)`` float32 scores.
        idxs (Tensor): ``(K,)`` int64 group of each box.
        iou_threshold (float): NMS IoU threshold.
        max_num (int): Keep at most this many over all groups; ``<= 0``: no cap. Defaults to -1.
        class_agnostic (bool): Ignore ``idxs`` (mmcv's ``nms_cfg.class_agnostic``). Defaults to
            False.

    Returns:
        Tensor: ``(num_kept,)`` int64 indices into ``boxes``, highest score first.
    """
    if class_agnostic:
        return nms(boxes, scores, iou_threshold, max_num)
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = idxs.to(boxes) * (max_coordinate + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold, max_num)


class _RoIAlign(Function):
    """``mmcv.ops.roi_align`` (avg) -> ONNX ``RoiAlign`` (opset 16)."""

    @staticmethod
    def forward(ctx, features: Tensor, boxes: Tensor, batch_indices: Tensor, output_height: int,
                output_width: int, spatial_scale: float, sampling_ratio: int,
                aligned: bool) -> Tensor:
        if boxes.shape[0] == 0:
            return features.new_zeros((0, features.shape[1], output_height, output_width))
        from mmcv.ops import roi_align as mmcv_roi_align  # heavy, and only needed to export
        rois = torch.cat([batch_indices.to(boxes)[:, None], boxes], dim=1)
        return mmcv_roi_align(features, rois, (output_height, output_width), spatial_scale,
                              sampling_ratio, 'avg', aligned)

    @staticmethod
    def symbolic(g, features, boxes, batch_indices, output_height: int, output_width: int,
                 spatial_scale: float, sampling_ratio: int, aligned: bool):
        # mmcv aligned=True shifts the scaled RoI by -0.5 and allows RoIs under one pixel
        # (ONNX 'half_pixel'); aligned=False does neither shift and clamps RoI size to >= 1
        # (ONNX 'output_half_pixel', the opset-10 behaviour).
        return g.op('RoiAlign', features, boxes, batch_indices,
                    coordinate_transformation_mode_s='half_pixel' if aligned
                    else 'output_half_pixel',
                    mode_s='avg', output_height_i=output_height, output_width_i=output_width,
                    sampling_ratio_i=sampling_ratio, spatial_scale_f=spatial_scale)


def roi_align(features: Tensor, boxes: Tensor, batch_indices: Tensor,
              output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int = 0,
              aligned: bool = True) -> Tensor:
    """Average RoI Align, as ``mmcv.ops.roi_align(..., pool_mode='avg')``; exports to ``RoiAlign``.

    Args:
        features (Tensor): ``(N, C, H, W)`` float32 feature map.
        boxes (Tensor): ``(K, 4)`` float32 boxes ``x1, y1, x2, y2`` in input-image pixels.
        batch_indices (Tensor): ``(K,)`` int64 image of each box.
        output_size (tuple of int): ``(height, width)`` of each pooled RoI.
        spatial_scale (float): Feature-map size over image size (``1 / stride``).
        sampling_ratio (int): Samples per bin along each axis; 0: adaptive. Defaults to 0.
        aligned (bool): mmcv's ``aligned`` (pixel-centre RoI coordinates). Defaults to True.

    Returns:
        Tensor: ``(K, C, *output_size)`` pooled features.
    """
    return _RoIAlign.apply(features, boxes, batch_indices, int(output_size[0]),
                           int(output_size[1]), float(spatial_scale), int(sampling_ratio),
                           bool(aligned))


class _TopKUpTo(Function):
    """The ``k`` highest of a 1-D tensor, ``k`` capped at its length -> ONNX ``TopK``."""

    @staticmethod
    def forward(ctx, x: Tensor, k: int) -> Tuple[Tensor, Tensor]:
        # mmdet's RPN sorts and slices ("sort is faster than topk"); same values, same ties.
        values, indices = x.sort(descending=True)
        return values[:k], indices[:k]

    @staticmethod
    def symbolic(g, x, k: int):
        # k is computed in the graph, so a dynamic input size can have fewer than k scores.
        k_ = g.op('Min', g.op('Shape', x), _const(g, [k], torch.long))
        return g.op('TopK', x, k_, axis_i=0, largest_i=1, sorted_i=1, outputs=2)


def topk_up_to(x: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The ``min(k, len(x))`` largest values of a 1-D tensor and their indices, largest first.

    Args:
        x (Tensor): ``(K,)`` scores.
        k (int): How many to keep (positive).

    Returns:
        tuple[Tensor, Tensor]: values ``(min(k, K),)`` and int64 indices into ``x``.
    """
    if k <= 0:
        raise ValueError(f'topk_up_to needs a positive k, got {k}')
    return _TopKUpTo.apply(x, int(k))


def map_roi_levels(boxes: Tensor, num_levels: int, finest_scale: float = 56) -> Tensor:
    """The FPN level each RoI is pooled from, by mmdet's ``SingleRoIExtractor.map_roi_levels``.

    ``scale = sqrt(w * h)``; level ``floor(log2(scale / finest_scale + 1e-6))`` clamped to
    ``[0, num_levels - 1]``: RoIs under 112 px go to the finest level, 112-224 px to the next, ...

    Args:
        boxes (Tensor): ``(K, 4)`` boxes ``x1, y1, x2, y2``.
        num_levels (int): Number of feature levels.
        finest_scale (float): Scale of the finest level. Defaults to 56.

    Returns:
        Tensor: ``(K,)`` int64 level indices.
    """
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def multi_level_roi_align(features: Sequence[Tensor], boxes: Tensor,
                          spatial_scales: Sequence[float], output_size: Tuple[int, int],
                          sampling_ratio: int = 0, aligned: bool = True,
                          finest_scale: float = 56) -> Tensor:
    """RoI features from an FPN, as mmdet's ``SingleRoIExtractor`` (batch of one image).

    Each RoI is pooled (:func:`roi_align`) from the level :func:`map_roi_levels` picks. In the
    graph: per level a ``NonZero`` selects its RoIs, one ``RoiAlign`` pools them, and the
    pooled features are put back in RoI order by gathering with the inverse permutation.

    Args:
        features (sequence of Tensor): ``(1, C, H_l, W_l)`` float32 maps, finest first.
        boxes (Tensor): ``(K, 4)`` float32 RoIs in input-image pixels.
        spatial_scales (sequence of float): ``1 / stride`` of each level.
        output_size (tuple of int): ``(height, width)`` of each pooled RoI.
        sampling_ratio (int): See :func:`roi_align`. Defaults to 0.
        aligned (bool): See :func:`roi_align`. Defaults to True.
        finest_scale (float): See :func:`map_roi_levels`. Defaults to 56.

    Returns:
        Tensor: ``(K, C, *output_size)`` pooled features, in the order of ``boxes``.
    """
    if len(features) != len(spatial_scales):
        raise ValueError(f'{len(features)} feature levels but {len(spatial_scales)} scales')
    levels = map_roi_levels(boxes, len(features), finest_scale)
    pooled, order = [], []
    for level, (feature, scale) in enumerate(zip(features, spatial_scales)):
        inds = torch.nonzero(levels == level).squeeze(1)
        pooled.append(roi_align(feature, boxes.index_select(0, inds), torch.zeros_like(inds),
                                output_size, scale, sampling_ratio, aligned))
        order.append(inds)
    # pooled rows are in order cat(order); row i of the result is where RoI i landed
    return torch.cat(pooled).index_select(0, torch.argsort(torch.cat(order)))

