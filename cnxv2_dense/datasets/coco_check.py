"""Check a detection config's COCO data before training, naming each problem and its fix.

Each of these otherwise shows up late or not at all: an annotation file or image folder the
config names but that is not there (an error after the model is built), classes that are not
among the file's categories (mmdet matches them by name and silently trains on no boxes of that
class), annotations of images the file does not list, image files that are missing (an error at
the first batch that draws one, maybe hours in), image files that are empty, not images or
truncated PNGs, or whose size is not the one the file records (masks are drawn at the recorded
size), and heads whose ``num_classes`` is not the number of classes (wrong logits, or an index
error in the loss).
"""
import json
import os.path as osp
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence

from PIL import Image

# Dataset wrappers (RepeatDataset, ConcatDataset, MultiImageMixDataset, ...) hold the dataset
# under one of these keys.
_WRAPPED = ('dataset', 'datasets')


def _coco_datasets(dataset_cfg) -> Iterator[dict]:
    """The dataset configs with an ``ann_file`` inside (possibly wrapped) ``dataset_cfg``."""
    if isinstance(dataset_cfg, (list, tuple)):
        for item in dataset_cfg:
            yield from _coco_datasets(item)
    elif isinstance(dataset_cfg, dict):
        if dataset_cfg.get('ann_file'):
            yield dataset_cfg
        for key in _WRAPPED:
            if key in dataset_cfg:
                yield from _coco_datasets(dataset_cfg[key])


def _path(data_root: str, path: str) -> str:
    return path if osp.isabs(path) or not data_root else osp.join(data_root, path)


def check_coco_dataset(ann_file: str, image_dir: str, classes: Sequence[str], where: str,
                       max_listed: int = 5) -> List[str]:
    """Problems of one COCO annotation file and its image folder.

    Args:
        ann_file (str): The annotation file.
        image_dir (str): The folder the ``file_name`` of its images are relative to.
        classes (Sequence[str]): The classes the dataset trains on (mmdet matches them by name).
        where (str): The config key to name in messages, e.g. ``train_dataloader.dataset``.
        max_listed (int): Missing files named per problem. Defaults to 5.

    Returns:
        list[str]: One line per problem.
    """
    if not osp.isfile(ann_file):
        return [f'{where}.ann_file: {ann_file} does not exist; set data_root / ann_file to '
                'your annotation file']
    try:
        with open(ann_file, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        return [f'{ann_file}: not a readable JSON file ({err})']
    missing_keys = [key for key in ('images', 'annotations', 'categories') if key not in data]
    if missing_keys:
        return [f'{ann_file}: no {" / ".join(missing_keys)}: a COCO instance file has images, '
                'annotations and categories']
    problems = []
    names = [category.get('name') for category in data['categories']]
    absent = [name for name in classes if name not in names]
    if absent:
        problems.append(
            f'{ann_file}: classes {absent} of {where}.metainfo are not among its categories '
            f'{names}; mmdet matches classes to categories by name: set '
            f'metainfo=dict(classes=...) to category names of the file')
    image_ids = {image.get('id') for image in data['images']}
    orphans = sorted({ann.get('image_id') for ann in data['annotations']} - image_ids,
                     key=str)
    if orphans:
        problems.append(f'{ann_file}: annotations of image ids {orphans[:max_listed]}'
                        f'{" ..." if len(orphans) > max_listed else ""} that its images do not '
                        'list; add those images or remove their annotations')
    if not osp.isdir(image_dir):
        problems.append(f'{where}.data_prefix.img: {image_dir} is not a folder; set data_root / '
                        'data_prefix to your images')
        return problems
    missing = [image.get('file_name') for image in data['images']
               if not osp.isfile(osp.join(image_dir, str(image.get('file_name'))))]
    if missing:
        problems.append(f'{ann_file}: {len(missing)} of its {len(data["images"])} images are not '
                        f'in {image_dir}: {missing[:max_listed]}'
                        f'{" ..." if len(missing) > max_listed else ""}')
    return problems + _image_problems(image_dir, data['images'], max_listed)


def image_problem(path: str, size: Optional[Sequence[int]] = None) -> Optional[str]:
    """Why ``path`` is no usable image (empty, not an image, a damaged PNG), or has not the
    recorded ``(width, height)``; None when it is fine. Reads the header (a PNG through its
    checksums), not the pixels, so a truncated JPEG is not noticed."""
    try:
        with Image.open(path) as image:
            actual = image.size
            image.verify()
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return f'{path}: not a readable image ({type(err).__name__}: {err})'
    if size is not None and tuple(actual) != tuple(size):
        return (f'{path}: {actual[0]}x{actual[1]} pixels, but the annotation file records '
                f'{size[0]}x{size[1]}; fix width / height there (masks are drawn at that size)')
    return None


def _image_problems(image_dir: str, images: List[dict], max_listed: int) -> List[str]:
    """Problems of the images present in ``image_dir`` (checked in parallel threads: I/O)."""
    def one(image):
        path = osp.join(image_dir, str(image.get('file_name')))
        if not osp.isfile(path):
            return None
        recorded = (image['width'], image['height']) if 'width' in image and 'height' in image \
            else None
        return image_problem(path, recorded)

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = [p for p in pool.map(one, images) if p is not None]
    listed = found[:max_listed]
    if len(found) > max_listed:
        listed.append(f'... and {len(found) - max_listed} more images like these')
    return listed


def _head_class_counts(model_cfg) -> Iterator[tuple]:
    """(config key, num_classes) of every head in a detector config."""
    roi_head = (model_cfg or {}).get('roi_head') or {}
    for key in ('bbox_head', 'mask_head'):
        heads = roi_head.get(key)
        for index, head in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            if isinstance(head, dict) and 'num_classes' in head:
                suffix = f'[{index}]' if isinstance(heads, (list, tuple)) else ''
                yield f'model.roi_head.{key}{suffix}.num_classes', head['num_classes']


def detection_data_problems(cfg) -> List[str]:
    """Check a detection (mmdet) config's train and val COCO datasets and its heads' classes.

    Configs that are not mmdet's are not checked (empty list).
    """
    if cfg.get('default_scope') != 'mmdet':
        return []
    from mmdet.registry import DATASETS
    problems: List[str] = []
    for loader_key in ('train_dataloader', 'val_dataloader'):
        loader = cfg.get(loader_key) or {}
        for dataset in _coco_datasets(loader.get('dataset')):
            where = f'{loader_key}.dataset'
            classes = (dataset.get('metainfo') or {}).get('classes')
            if classes is None:
                dataset_class = DATASETS.get(dataset.get('type', 'CocoDataset'))
                classes = getattr(dataset_class, 'METAINFO', {}).get('classes', ())
            data_root = dataset.get('data_root') or ''
            image_dir = _path(data_root, (dataset.get('data_prefix') or {}).get('img', ''))
            problems += check_coco_dataset(_path(data_root, dataset['ann_file']), image_dir,
                                           classes, where)
            if loader_key == 'train_dataloader' and classes:  # (unknown dataset type: no count)
                for key, count in _head_class_counts(cfg.get('model')):
                    if count != len(classes):
                        problems.append(
                            f'{key} is {count} but {where} has {len(classes)} classes '
                            f'{list(classes)}; set it to len(classes)')
    return problems
