"""Data transforms for FCMAE pretraining (registered as ``cnxv2_dense.X``).

mmcv already provides the horizontal flip (``RandomFlip``); what it lacks is added here:

* :class:`LoadImage` - like mmcv's ``LoadImageFromFile`` but a file that cannot be decoded
  returns None (the dataset then reports it and draws another image) instead of failing an
  assertion deep inside a data-loader worker.
* :class:`RandomResizedCrop` - the Inception-style crop of torchvision / mmpretrain (FCMAE uses
  area scale (0.2, 1.0), bicubic); mmcv / mmdet have no such transform.
* :class:`PackImageInputs` - image to an ``(C, H, W)`` uint8 tensor plus a meta-only data sample,
  the input format of mmengine's ``ImgDataPreprocessor``.
"""
import math
from typing import Dict, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmengine.structures import BaseDataElement

from ..registry import TRANSFORMS


@TRANSFORMS.register_module()
class LoadImage(BaseTransform):
    """Load ``results['img_path']`` into ``results['img']`` (H, W, 3) uint8, BGR (OpenCV).

    Args:
        color_type (str): Flag of :func:`mmcv.imfrombytes`. Defaults to ``'color'``.
        imdecode_backend (str): Decoder backend. Defaults to ``'cv2'``.
        skip_unreadable (bool): Return None for a file that cannot be read or decoded (the
            dataset skips it); otherwise raise. Defaults to True.
        backend_args (dict, optional): File backend arguments of :func:`mmengine.fileio.get`.
    """

    def __init__(self, color_type: str = 'color', imdecode_backend: str = 'cv2',
                 skip_unreadable: bool = True, backend_args: Optional[dict] = None) -> None:
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend
        self.skip_unreadable = skip_unreadable
        self.backend_args = None if backend_args is None else dict(backend_args)

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        error: Optional[Exception] = None
        try:
            img_bytes = fileio.get(path, backend_args=self.backend_args)
            img = mmcv.imfrombytes(img_bytes, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as err:  # decoders raise many types; the message is kept below
            img, error = None, err
        if img is None or img.size == 0:
            if self.skip_unreadable:
                return None
            raise ValueError(f'Cannot read image {path}' + (f': {error}' if error else ''))
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(color_type={self.color_type!r}, '
                f'imdecode_backend={self.imdecode_backend!r}, '
                f'skip_unreadable={self.skip_unreadable})')


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Crop a random area / aspect-ratio region and resize it to ``scale``.

    The region is drawn as in torchvision: up to ``max_attempts`` tries of an area fraction
    uniform in ``crop_ratio_range`` and a log-uniform aspect ratio; if none fits, a central crop
    with the aspect ratio clamped to ``aspect_ratio_range``.

    Args:
        scale (int | tuple[int, int]): Output size; an int gives a square, a tuple is (h, w).
        crop_ratio_range (tuple[float, float]): Range of the crop area as a fraction of the
            image area. Defaults to (0.08, 1.0) (FCMAE uses (0.2, 1.0)).
        aspect_ratio_range (tuple[float, float]): Range of width / height. Defaults to
            (3/4, 4/3).
        max_attempts (int): Tries before the central-crop fallback. Defaults to 10.
        interpolation (str): ``'nearest'``, ``'bilinear'``, ``'bicubic'``, ``'area'`` or
            ``'lanczos'``. Defaults to ``'bilinear'``.
    """

    def __init__(self, scale: Union[int, Sequence[int]],
                 crop_ratio_range: Tuple[float, float] = (0.08, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10, interpolation: str = 'bilinear') -> None:
        size = (scale, scale) if isinstance(scale, int) else tuple(int(s) for s in scale)
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f'scale must be a positive int or (h, w), got {scale}')
        lo, hi = crop_ratio_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f'crop_ratio_range must satisfy 0 < lo <= hi <= 1, got '
                             f'{crop_ratio_range}')
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(f'aspect_ratio_range must be increasing and positive, got '
                             f'{aspect_ratio_range}')
        if interpolation not in ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos'):
            raise ValueError(f'Unknown interpolation {interpolation!r}')
        if max_attempts < 1:
            raise ValueError(f'max_attempts must be >= 1, got {max_attempts}')
        self.scale: Tuple[int, int] = size  # (h, w)
        self.crop_ratio_range = (float(lo), float(hi))
        self.aspect_ratio_range = (float(aspect_ratio_range[0]), float(aspect_ratio_range[1]))
        self.max_attempts = max_attempts
        self.interpolation = interpolation

    def crop_box(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """Draw a crop ``(top, left, crop_h, crop_w)`` for an image of ``height x width``."""
        area = height * width
        log_ratio = (math.log(self.aspect_ratio_range[0]), math.log(self.aspect_ratio_range[1]))
        for _ in range(self.max_attempts):
            target_area = area * np.random.uniform(*self.crop_ratio_range)
            aspect = math.exp(np.random.uniform(*log_ratio))
            crop_w = int(round(math.sqrt(target_area * aspect)))
            crop_h = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(np.random.randint(0, height - crop_h + 1))
                left = int(np.random.randint(0, width - crop_w + 1))
                return top, left, crop_h, crop_w
        # Fallback: the largest central crop with an allowed aspect ratio.
        in_ratio = width / height
        if in_ratio < self.aspect_ratio_range[0]:
            crop_w, crop_h = width, int(round(width / self.aspect_ratio_range[0]))
        elif in_ratio > self.aspect_ratio_range[1]:
            crop_h, crop_w = height, int(round(height * self.aspect_ratio_range[1]))
        else:
            crop_h, crop_w = height, width
        crop_h, crop_w = max(1, min(crop_h, height)), max(1, min(crop_w, width))
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w

    def transform(self, results: dict) -> dict:
        img = results['img']
        top, left, crop_h, crop_w = self.crop_box(*img.shape[:2])
        img = img[top:top + crop_h, left:left + crop_w]
        out_h, out_w = self.scale
        img = mmcv.imresize(img, (out_w, out_h), interpolation=self.interpolation, backend='cv2')
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['crop_bbox'] = (left, top, left + crop_w, top + crop_h)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'crop_ratio_range={self.crop_ratio_range}, '
                f'aspect_ratio_range={self.aspect_ratio_range}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class PackImageInputs(BaseTransform):
    """Pack ``results['img']`` (H, W[, C]) into ``dict(inputs=(C, H, W) tensor,
    data_samples=BaseDataElement)`` with the listed meta keys.

    Args:
        meta_keys (Sequence[str]): Keys of ``results`` copied into the sample's metainfo
            (missing ones are ignored). Defaults to path, shapes and flip state.
    """

    def __init__(self, meta_keys: Sequence[str] = ('img_path', 'ori_shape', 'img_shape', 'flip',
                                                   'flip_direction')) -> None:
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> Dict[str, object]:
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        # (H, W, C) -> (C, H, W)
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = BaseDataElement(metainfo={k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
