"""What mmdet does after the exported detector graph, in numpy alone.

The graph (:mod:`cnxv2_dense.deploy.detector`) returns boxes in the resized image's pixels and
``M x M`` mask probabilities per detection, as mmdet's ``predict(..., rescale=False)`` has them
before pasting. A deployed user needs only numpy and onnxruntime for the rest:

* :func:`rescale_detections`: boxes in the original image (mmdet's ``rescale=True``).
* :func:`paste_masks`: full-image binary masks, mmdet's ``FCNMaskHead._predict_by_feat_single``
  (``_do_paste_mask`` with ``skip_empty=True``, the CPU path, then ``>= mask_thr_binary``).
"""
from typing import Sequence

import numpy as np


def rescale_detections(boxes: np.ndarray, scale_factor: Sequence[float]) -> np.ndarray:
    """Boxes from the resized image to the original one, as mmdet's ``rescale=True``.

    Args:
        boxes (np.ndarray): ``(N, 4)`` boxes ``x1, y1, x2, y2`` in the resized image.
        scale_factor (sequence of float): mmdet's ``scale_factor``: ``(w_scale, h_scale)``,
            resized size over original size.

    Returns:
        np.ndarray: ``(N, 4)`` float32 boxes in original-image pixels.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must be (N, 4), got {boxes.shape}')
    if len(scale_factor) != 2 or min(scale_factor) <= 0:
        raise ValueError(f'scale_factor must be two positive numbers (w_scale, h_scale), got '
                         f'{tuple(scale_factor)}')
    w_scale, h_scale = (float(s) for s in scale_factor)
    return boxes / np.array([w_scale, h_scale, w_scale, h_scale], dtype=np.float32)


def _sample_weights(coords: np.ndarray, size: int) -> np.ndarray:
    """Bilinear weights of ``grid_sample(align_corners=False, padding_mode='zeros')`` along one
    axis: ``(len(coords), size)``; a tap outside ``[0, size)`` contributes 0.

    Args:
        coords (np.ndarray): float32 normalised coordinates in ``[-1, 1]`` (others sample 0).
        size (int): Length of the sampled axis.
    """
    # unnormalise with align_corners=False, in float32 as torch's CPU kernel computes it
    pos = (coords + np.float32(1)) * (np.float32(size) / np.float32(2)) - np.float32(0.5)
    low = np.floor(pos)
    frac = (pos - low).astype(np.float64)
    weights = np.zeros((len(coords), size), dtype=np.float64)
    rows = np.arange(len(coords))
    for tap, weight in ((low, 1.0 - frac), (low + 1, frac)):
        inside = (tap >= 0) & (tap < size)  # False for NaN as well
        weights[rows[inside], tap[inside].astype(np.int64)] += weight[inside]
    return weights


def _normalised_grid(start: int, stop: int, low: np.float32, high: np.float32) -> np.ndarray:
    """Pixel centres ``start + 0.5, ..., stop - 0.5`` mapped to ``[-1, 1]`` over ``[low, high]``
    in float32 (``_do_paste_mask``); infinities (a zero-size box) become 0, as mmdet sets them."""
    centres = np.arange(start, stop).astype(np.float32) + np.float32(0.5)
    with np.errstate(divide='ignore', invalid='ignore'):
        grid = (centres - low) / (high - low) * np.float32(2) - np.float32(1)
    grid[np.isinf(grid)] = 0
    return grid


def paste_masks(masks: np.ndarray, boxes: np.ndarray, out_h: int, out_w: int,
                threshold: float = 0.5) -> np.ndarray:
    """Paste ``M x M`` mask probabilities into full-image binary masks, as mmdet does.

    Each mask is stretched over its box by bilinear sampling at the image's pixel centres
    (``F.grid_sample(..., align_corners=False)``, zero outside the mask), computed only over the
    box's pixels plus a 1-pixel margin (mmdet's ``skip_empty``; zero elsewhere), then
    thresholded with ``>= threshold`` (the config's ``test_cfg.rcnn.mask_thr_binary``).

    Args:
        masks (np.ndarray): ``(N, M, M)`` probabilities (the graph's ``masks`` output).
        boxes (np.ndarray): ``(N, 4)`` boxes in the output image's pixels (for the original
            image: :func:`rescale_detections` first).
        out_h (int): Output height (the original image's, mmdet's ``ori_shape[0]``).
        out_w (int): Output width.
        threshold (float): Binarisation threshold in ``[0, 1]``. Defaults to 0.5.

    Returns:
        np.ndarray: ``(N, out_h, out_w)`` bool masks.
    """
    masks = np.asarray(masks, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float32)
    if masks.ndim != 3:
        raise ValueError(f'masks must be (N, M, M) probabilities, got shape {masks.shape}')
    if boxes.shape != (len(masks), 4):
        raise ValueError(f'boxes must be (N, 4) with N = {len(masks)} masks, got {boxes.shape}')
    if not 0 <= threshold <= 1:
        raise ValueError(f'threshold must lie in [0, 1] (mask_thr_binary), got {threshold}')
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'the output size must be positive, got {out_h} x {out_w}')
    pasted = np.zeros((len(masks), out_h, out_w), dtype=bool)
    for i, (mask, (x0, y0, x1, y1)) in enumerate(zip(masks, boxes)):
        # the pixels _do_paste_mask computes (skip_empty): box extent + 1, inside the image
        x_start, y_start = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
        x_stop = max(min(int(np.ceil(x1)) + 1, out_w), x_start)
        y_stop = max(min(int(np.ceil(y1)) + 1, out_h), y_start)
        if x_stop == x_start or y_stop == y_start:
            continue
        weights_x = _sample_weights(_normalised_grid(x_start, x_stop, x0, x1), mask.shape[1])
        weights_y = _sample_weights(_normalised_grid(y_start, y_stop, y0, y1), mask.shape[0])
        # bilinear sampling with zero padding is separable: rows, then columns
        values = weights_y @ mask.astype(np.float64) @ weights_x.T
        pasted[i, y_start:y_stop, x_start:x_stop] = values >= threshold
    return pasted
