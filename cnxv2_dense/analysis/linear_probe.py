"""Frozen-feature linear probe for dense prediction: is a pretrained backbone better than noise?

A cheap check, minutes on a CPU, of what a pretraining put into a backbone before anyone spends
hours fine-tuning it: every stage's output is resized to one grid (1/8 of the input side:
average-pooled from finer maps, bilinear from coarser ones), concatenated, standardised per
channel over the training images, and one linear layer (a 1x1 convolution) is trained to classify
each grid cell; its logits are upsampled to the input size (bilinear) and scored as mmseg's
IoUMetric does (confusion totals over the whole split). Cells are 8 px, so even features that
hold the label exactly lose a few pixels at class boundaries, where neighbouring cells' logits blend.

The backbone never trains, so the score measures what its features already separate linearly.
Compare it with the same architecture at random initialisation: the gap is what the pretraining
added. This is the linear-probing protocol of MAE / ConvNeXt V2 made dense; like theirs it favours
linearly decodable features and so says less about fine-tuning than a fine-tuning run does.
"""
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def dense_features(backbone: nn.Module, images: torch.Tensor, stride: int = 8,
                   batch_size: int = 32) -> torch.Tensor:
    """Every stage of ``backbone`` on one grid, concatenated.

    Args:
        backbone (nn.Module): Returns a tuple of ``(N, C_i, H_i, W_i)`` maps (an mmdet / mmseg
            backbone with ``out_indices`` covering the stages to probe).
        images (Tensor): ``(N, 3, H, W)`` normalised images; ``H`` and ``W`` divisible by
            ``stride``.
        stride (int): The grid's cell size in input pixels.
        batch_size (int): Images per forward pass.

    Returns:
        Tensor: ``(N, sum C_i, H / stride, W / stride)`` float32.
    """
    height, width = images.shape[-2:]
    if height % stride or width % stride:
        raise ValueError(f'image size {height}x{width} is not divisible by the probe stride '
                         f'{stride}: crop or resize the images to a multiple of {stride}')
    size = (height // stride, width // stride)
    was_training = backbone.training
    backbone.eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        maps = []
        for feat in backbone(images[start:start + batch_size]):
            if feat.shape[-2] >= size[0] and feat.shape[-1] >= size[1]:
                feat = F.adaptive_avg_pool2d(feat, size)
            else:
                feat = F.interpolate(feat, size=size, mode='bilinear', align_corners=False)
            maps.append(feat.float())
        chunks.append(torch.cat(maps, dim=1))
    backbone.train(was_training)
    return torch.cat(chunks)


def confusion_matrix(pred: torch.Tensor, truth: torch.Tensor, num_classes: int,
                     ignore_index: int = 255) -> torch.Tensor:
    """``(num_classes, num_classes)`` counts, rows the truth and columns the prediction."""
    keep = truth != ignore_index
    index = truth[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def class_iou(conf: torch.Tensor) -> torch.Tensor:
    """IoU per class from a confusion matrix; NaN for a class absent from truth and prediction."""
    conf = conf.double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, math.nan))


@dataclass
class ProbeResult:
    miou: float  # percent, NaN classes left out
    class_iou: List[float]  # percent per class


class LinearProbe:
    """One linear layer on standardised frozen features, trained with class-weighted cross
    entropy (AdamW, ``steps`` mini-batches of ``batch_cells`` random grid cells).

    Args:
        num_classes (int): Classes, background included.
        class_weight (Sequence[float], optional): Cross-entropy weight per class.
        steps (int): Optimiser steps.
        lr (float): AdamW learning rate.
        weight_decay (float): AdamW weight decay.
        batch_cells (int): Grid cells per step.
        seed (int): Seeds the initialisation and the cell sampling.
        ignore_index (int): Label of pixels that are neither trained on nor scored.
    """

    def __init__(self, num_classes: int, class_weight: Optional[Sequence[float]] = None,
                 steps: int = 300, lr: float = 1e-2, weight_decay: float = 1e-4,
                 batch_cells: int = 8192, seed: int = 0, ignore_index: int = 255):
        self.num_classes = num_classes
        self.class_weight = None if class_weight is None else torch.tensor(class_weight)
        self.steps, self.lr, self.weight_decay = steps, lr, weight_decay
        self.batch_cells, self.seed, self.ignore_index = batch_cells, seed, ignore_index
        self.linear: Optional[nn.Linear] = None

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> 'LinearProbe':
        """Train on ``(N, C, h, w)`` features and ``(N, H, W)`` integer label maps (taken at
        each cell's nearest pixel)."""
        cell_labels = F.interpolate(labels[:, None].float(), size=features.shape[-2:],
                                    mode='nearest')[:, 0].long()
        self.mean = features.mean(dim=(0, 2, 3), keepdim=True)
        self.std = features.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-6)
        x = self._standardise(features).permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        y = cell_labels.flatten()
        keep = y != self.ignore_index
        x, y = x[keep], y[keep]
        generator = torch.Generator().manual_seed(self.seed)
        self.linear = nn.Linear(x.shape[1], self.num_classes)
        with torch.no_grad():  # seeded, independent of the global RNG
            bound = 1 / math.sqrt(x.shape[1])
            self.linear.weight.uniform_(-bound, bound, generator=generator)
            self.linear.bias.zero_()
        optimizer = torch.optim.AdamW(self.linear.parameters(), lr=self.lr,
                                      weight_decay=self.weight_decay)
        for _ in range(self.steps):
            index = torch.randint(0, len(x), (min(self.batch_cells, len(x)),),
                                  generator=generator)
            loss = F.cross_entropy(self.linear(x[index]), y[index], weight=self.class_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return self

    def _standardise(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std

    @torch.no_grad()
    def predict(self, features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``(N, H, W)`` class indices at ``size`` (logits upsampled bilinearly)."""
        if self.linear is None:
            raise RuntimeError('call fit() before predict()')
        logits = self.linear(self._standardise(features).permute(0, 2, 3, 1))
        logits = F.interpolate(logits.permute(0, 3, 1, 2), size=tuple(size), mode='bilinear',
                               align_corners=False)
        return logits.argmax(1)

    def score(self, features: torch.Tensor, labels: torch.Tensor) -> ProbeResult:
        """mIoU of the predictions on ``features`` against ``(N, H, W)`` ``labels``."""
        conf = confusion_matrix(self.predict(features, labels.shape[-2:]), labels,
                                self.num_classes, self.ignore_index)
        ious = class_iou(conf)
        present = ious[~ious.isnan()]
        return ProbeResult(float(present.mean() * 100),
                           [round(float(v) * 100, 2) for v in ious])
