"""How an exported model is compared with the PyTorch model it came from (numpy only).

The same criteria serve the exporter's check on the spot and the tests:
- dense outputs (feature maps, segmentation scores): the largest difference relative to the
  largest magnitude of the PyTorch output;
- detections: the same number; each ONNX Runtime detection matched one-to-one to a PyTorch
  detection of the same label by box IoU (greedy, highest score first; corners within 0.05 px
  count as IoU 1, for slivers clipped at the border); box IoU, score and mask IoU of every pair
  must pass the thresholds, but for the masks of slivers (a box under 1 px wide or high).
"""
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np

MASK_PIXELS_FLIPPED = 2
# A box narrower (or lower) than this, in pixels, is a sliver: its pasted mask is at most a
# line of pixels sampled across a fraction of a pixel, so a corner that moves by float rounding
# (0.01 px) moves every sample by a percent of the mask and flips many of those pixels. Such a
# pair's masks are not compared (counted in ``slivers``); its box is, by the corner rule.
SLIVER_PX = 1.0


def relative_error(test: np.ndarray, reference: np.ndarray) -> float:
    """``max |test - reference| / max |reference|`` (0 for two empty arrays)."""
    test, reference = np.asarray(test, np.float64), np.asarray(reference, np.float64)
    if test.shape != reference.shape:
        raise ValueError(f'shapes differ: {test.shape} vs {reference.shape}')
    if reference.size == 0:
        return 0.0
    scale = max(float(np.abs(reference).max()), np.finfo(np.float32).tiny)
    return float(np.abs(test - reference).max()) / scale


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of x1, y1, x2, y2 boxes (no +1, as mmdet)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 1 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@dataclass
class DetectionParity:
    """The comparison of one image's detections; ``ok`` when every criterion holds."""
    count_ref: int
    count_test: int
    unmatched: int = 0
    min_box_iou: float = 1.0
    max_score_diff: float = 0.0
    min_mask_iou: float = 1.0
    slivers: int = 0
    failures: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> Dict[str, float]:
        return dict(count_pytorch=self.count_ref, count_onnx=self.count_test,
                    unmatched=self.unmatched, min_box_iou=self.min_box_iou,
                    max_score_diff=self.max_score_diff, min_mask_iou=self.min_mask_iou,
                    slivers=self.slivers, ok=self.ok)


def compare_detections(ref: Dict[str, np.ndarray], test: Dict[str, np.ndarray],
                       min_box_iou: float = 0.99, max_score_diff: float = 1e-3,
                       min_mask_iou: float = 0.98) -> DetectionParity:
    """Match ``test`` detections to ``ref`` ones and check the criteria.

    Args:
        ref (dict): PyTorch's ``boxes (N, 4)``, ``scores (N,)``, ``labels (N,)`` and optionally
            ``masks (N, H, W)`` bool.
        test (dict): The same from the exported model.
        min_box_iou (float): Each pair's box IoU must exceed this. Defaults to 0.99.
        max_score_diff (float): Each pair's score difference must stay within. Defaults to 1e-3.
        min_mask_iou (float): Each pair's mask IoU must exceed this. Defaults to 0.98.
    """
    result = DetectionParity(len(ref['scores']), len(test['scores']))
    if result.count_ref != result.count_test:
        result.failures.append(f'{result.count_test} detections, PyTorch has {result.count_ref}')
    ious = box_iou(test['boxes'], ref['boxes'])
    # NOTE: a box clipped to a sliver at the image border (height or width ~0) has an IoU that
    # float rounding swings between 0 and 1; boxes whose corners agree to 0.05 px are the same.
    corners = np.abs(np.asarray(test['boxes'], np.float64).reshape(-1, 1, 4)
                     - np.asarray(ref['boxes'], np.float64).reshape(1, -1, 4)).max(axis=2)
    ious = np.where(corners <= 0.05, np.maximum(ious, 1.0), ious)
    same_label = np.asarray(test['labels'])[:, None] == np.asarray(ref['labels'])[None, :]
    ious = np.where(same_label, ious, -1.0)
    taken = np.zeros(result.count_ref, bool)
    for i in np.argsort(-np.asarray(test['scores']), kind='stable'):
        candidates = np.where(taken, -1.0, ious[i]) if result.count_ref else np.array([])
        j = int(np.argmax(candidates)) if candidates.size else -1
        if j < 0 or candidates[j] <= 0:
            result.unmatched += 1
            continue
        taken[j] = True
        result.min_box_iou = min(result.min_box_iou, float(ious[i, j]))
        result.max_score_diff = max(result.max_score_diff,
                                    abs(float(test['scores'][i]) - float(ref['scores'][j])))
        pair = np.stack([np.asarray(test['boxes'][i], np.float64),
                         np.asarray(ref['boxes'][j], np.float64)])
        if (pair[:, 2:] - pair[:, :2]).min() < SLIVER_PX:
            result.slivers += 1
        elif 'masks' in ref and 'masks' in test:
            # NOTE: a pixel whose pasted probability sits at the threshold flips with float
            # rounding; on a mask of a few pixels one flip is a large IoU change, so up to
            # MASK_PIXELS_FLIPPED differing pixels pass whatever the IoU.
            flipped = int(np.logical_xor(test['masks'][i], ref['masks'][j]).sum())
            if flipped > MASK_PIXELS_FLIPPED:
                result.min_mask_iou = min(result.min_mask_iou,
                                          mask_iou(test['masks'][i], ref['masks'][j]))
    if result.unmatched:
        result.failures.append(f'{result.unmatched} detections match no PyTorch detection of '
                               'their label')
    if result.min_box_iou <= min_box_iou:
        result.failures.append(f'box IoU {result.min_box_iou:.4f} <= {min_box_iou}')
    if result.max_score_diff > max_score_diff:
        result.failures.append(f'score differs by {result.max_score_diff:.2e} > {max_score_diff}')
    if result.min_mask_iou <= min_mask_iou:
        result.failures.append(f'mask IoU {result.min_mask_iou:.4f} <= {min_mask_iou}')
    return result

