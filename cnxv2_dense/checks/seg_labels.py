"""Check the label maps of a segmentation dataset before training, naming each bad file.

Without this, a label map saved as RGB colours, as JPEG, or with a value that is no class stops
training when it is first drawn -- maybe hours in -- with torch's bare "Target 5 is out of
bounds" on CPU or a device-side assert on GPU, and no file name. The check reads every label map
once and reports all problems at once: about 3 ms per ADE20K-sized map on one core (a minute for
ADE20K's 22,000 maps), spread over threads.
"""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
from PIL import Image

from .coco import TRAIN_LOADERS
from .images import UnusableImage, checked_image_size

# PIL modes whose pixel values are class indices (mmseg reads maps with Pillow, unchanged).
INDEX_MODES = ('L', 'P')
LOSSY_SUFFIXES = ('.jpg', '.jpeg')


def label_values_after_loading(raw_values: np.ndarray, reduce_zero_label: bool,
                               label_map: Optional[Dict[int, int]]) -> np.ndarray:
    """The labels mmseg's ``LoadAnnotations`` makes of the raw values of a label map."""
    values = raw_values.astype(np.uint8)
    if reduce_zero_label:  # 0 -> 255 (ignored), v -> v - 1, 255 stays 255
        values = np.where(values == 0, 255, values - 1).astype(np.uint8)
        values[values == 254] = 255
    if label_map:
        mapped = values.copy()
        for old, new in label_map.items():
            mapped[values == old] = new
        values = mapped
    return values


def check_label_map(seg_map: str, image: Optional[str], num_classes: int, ignore_index: int = 255,
                    reduce_zero_label: bool = False,
                    label_map: Optional[Dict[int, int]] = None) -> Optional[str]:
    """What is wrong with one label map, or None.

    Args:
        seg_map (str): The label map file.
        image (str, optional): Its image, whose size it must have.
        num_classes (int): Classes of the decode head; valid labels are ``0 .. num_classes-1``.
        ignore_index (int): The label the loss ignores. Defaults to 255.
        reduce_zero_label (bool): The dataset's setting (raw 0 is ignored, others shift by 1).
            Defaults to False.
        label_map (dict, optional): The dataset's class remapping. Defaults to None.

    Returns:
        str | None: One line naming the file, the problem and the fix.
    """
    path = Path(seg_map)
    if path.suffix.lower() in LOSSY_SUFFIXES:
        return (f'{seg_map}: saved as JPEG, whose lossy compression changes class indices at '
                'edges; save label maps as PNG (the class index in each pixel)')
    try:
        with Image.open(path) as label:
            mode, size = label.mode, label.size
            pixels = np.asarray(label) if mode in INDEX_MODES or mode.startswith('I') else None
    except (OSError, ValueError) as err:
        return f'{seg_map}: cannot be read as an image ({err})'
    if pixels is None:
        return (f'{seg_map}: a {mode} image (colours?); a label map holds one class index per '
                'pixel: a single-channel PNG (mode L or P) -- convert colours to indices first')
    if image is not None:
        try:
            image_size = checked_image_size(image)
        except UnusableImage as err:
            return (f'{image}: the image of {seg_map} cannot be used: {err}; replace it, or '
                    'remove it and its label map')
        if image_size != size:
            return (f'{seg_map}: {size[0]}x{size[1]} pixels but its image {image} is '
                    f'{image_size[0]}x{image_size[1]}; a label map must have its image\'s size')
    raw = np.unique(pixels)
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        return (f'{seg_map}: values {raw.min()}..{raw.max()} do not fit 8 bits as mmseg reads '
                'them; save class indices 0..255 as an 8-bit PNG')
    labels = label_values_after_loading(raw, reduce_zero_label, label_map)
    bad = sorted({int(raw[i]) for i, v in enumerate(labels)
                  if v >= num_classes and v != ignore_index})
    if bad:
        valid = (f'1..{num_classes} (0 and 255 are ignored: reduce_zero_label=True)'
                 if reduce_zero_label else f'0..{num_classes - 1} and {ignore_index} (ignored)')
        return (f'{seg_map}: values {bad} are no class of the {num_classes} the model has; '
                f'valid values are {valid}. Fix the map, or num_classes / classes in the config')
    return None


def check_label_maps(samples: Iterable[dict], num_classes: int, ignore_index: int = 255
                     ) -> List[str]:
    """Problems of every label map in ``samples`` (mmseg data infos: ``seg_map_path``,
    ``img_path``, ``reduce_zero_label``, ``label_map``), each map checked once, in order."""
    unique = {}
    for sample in samples:
        if sample.get('seg_map_path') is not None:
            unique.setdefault(sample['seg_map_path'], sample)

    def one(sample: dict) -> Optional[str]:
        return check_label_map(sample['seg_map_path'], sample.get('img_path'), num_classes,
                               ignore_index, bool(sample.get('reduce_zero_label', False)),
                               sample.get('label_map'))

    with ThreadPoolExecutor(max_workers=4) as pool:  # PNG decoding releases the GIL
        return [problem for problem in pool.map(one, unique.values()) if problem is not None]


def _data_infos(dataset) -> Iterable[dict]:
    for index in range(len(dataset)):
        yield dataset.get_data_info(index)


def segmentation_data_problems(cfg, loaders: Sequence[str] = TRAIN_LOADERS) -> List[str]:
    """Check the label maps and images of a segmentation config's datasets, and that its heads
    have as many classes as the first one.

    Builds the datasets as the Runner would (file lists only) and checks each label map against
    the decode head's ``num_classes`` and ``ignore_index``, and each image (readable, whole, of
    its label map's size). Configs that are not mmseg's, or whose decode head is not one dict,
    are not checked (empty list).

    Args:
        cfg (mmengine.Config): The config.
        loaders (Sequence[str]): The dataloaders to check. Defaults to the train and val loaders
            (``tools/test.py`` checks its test loader).

    Returns:
        list[str]: One line per bad label map.
    """
    head = cfg.get('model', {}).get('decode_head')
    if cfg.get('default_scope') != 'mmseg' or not isinstance(head, dict):
        return []
    from mmengine.registry import DefaultScope
    from mmengine.utils import import_modules_from_strings
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    problems: List[str] = []
    with DefaultScope.overwrite_default_scope('mmseg'):
        for key in loaders:
            loader = cfg.get(key)
            if not loader or not loader.get('dataset'):
                continue
            dataset = DATASETS.build(loader['dataset'])
            classes = dataset.metainfo.get('classes') or ()
            for name in ('decode_head', 'auxiliary_head'):
                other = cfg.model.get(name)
                for index, one in enumerate(other if isinstance(other, list) else [other]):
                    count = one.get('num_classes') if isinstance(one, dict) else None
                    if key == loaders[0] and classes and count not in (None, len(classes)):
                        where = f'model.{name}' + (f'[{index}]' if isinstance(other, list) else '')
                        problems.append(f'{where}.num_classes is {count} but {key}.dataset has '
                                        f'{len(classes)} classes; set it to len(classes)')
            problems += check_label_maps(_data_infos(dataset), head['num_classes'],
                                         head.get('ignore_index', 255))
    return problems
