"""Check a detection config's COCO data before training, naming each problem and its fix.

Each of these otherwise shows up late or not at all: an annotation file or image folder the
config names but that is not there (an error after the model is built), classes that are not
among the file's categories (mmdet matches them by name and silently trains on no boxes of that
class), annotations of images the file does not list, image files that are missing (an error at
the first batch that draws one, maybe hours in), image files that are empty, not images or
truncated (PNG, JPEG), or whose size is not the one the file records (masks are drawn at the
recorded size), and heads whose ``num_classes`` is not the number of classes (wrong logits, or an
index error in the loss).
"""
import json
import os.path as osp
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Sequence

from .images import image_problem

# Dataset wrappers (RepeatDataset, ConcatDataset, MultiImageMixDataset, ...) hold the dataset
# under one of these keys.
_WRAPPED = ('dataset', 'datasets')
# The dataloaders tools/train.py checks.
TRAIN_LOADERS = ('train_dataloader', 'val_dataloader')


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
                       max_listed: int = 5, needs_annotations: bool = True) -> List[str]:
    """Problems of one COCO annotation file and its image folder.

    Args:
        ann_file (str): The annotation file.
        image_dir (str): The folder the ``file_name`` of its images are relative to.
        classes (Sequence[str]): The classes the dataset trains on (mmdet matches them by name).
        where (str): The config key to name in messages, e.g. ``train_dataloader.dataset``.
        max_listed (int): Missing files named per problem. Defaults to 5.
        needs_annotations (bool): The file must have ``annotations`` (a test set's image list,
            such as COCO's ``image_info_test-dev2017.json``, need not). Defaults to True.

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
    required = ('images', 'annotations', 'categories') if needs_annotations else ('images',
                                                                                 'categories')
    missing_keys = [key for key in required if key not in data]
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
    orphans = sorted({ann.get('image_id') for ann in data.get('annotations', [])} - image_ids,
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
    return problems + _image_problems(ann_file, image_dir, data['images'], max_listed)


def _image_problems(ann_file: str, image_dir: str, images: List[dict],
                    max_listed: int) -> List[str]:
    """Problems of the images present in ``image_dir`` (checked in parallel threads: I/O)."""
    fix = (f're-export or download it again, or remove the image and its annotations from '
           f'{ann_file}')

    def one(image):
        path = osp.join(image_dir, str(image.get('file_name')))
        if not osp.isfile(path):
            return None
        recorded = (image['width'], image['height']) if 'width' in image and 'height' in image \
            else None
        return image_problem(path, recorded, fix)

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


def _missing_evaluator_files(cfg, loader_key: str) -> List[str]:
    """The ``ann_file`` of the evaluators that score ``loader_key`` (``val_dataloader`` ->
    ``val_evaluator``) that does not exist (it fails when the Runner builds the evaluator)."""
    key = loader_key.replace('_dataloader', '_evaluator')
    evaluators = cfg.get(key)
    problems = []
    for index, evaluator in enumerate(evaluators if isinstance(evaluators, (list, tuple))
                                      else [evaluators]):
        ann_file = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
        if isinstance(ann_file, str) and '://' not in ann_file and not osp.isfile(ann_file):
            where = key + (f'[{index}]' if isinstance(evaluators, (list, tuple)) else '')
            problems.append(f'{where}.ann_file: {ann_file} does not exist; set it to the '
                            'annotation file of the images it scores')
    return problems


def detection_data_problems(cfg, loaders: Sequence[str] = TRAIN_LOADERS) -> List[str]:
    """Check the COCO datasets of a detection (mmdet) config's dataloaders and its heads' classes.

    Args:
        cfg (mmengine.Config): The config.
        loaders (Sequence[str]): The dataloaders to check; the heads are checked against the
            classes of the first one. Defaults to the train and val loaders (``tools/test.py``
            checks its test loader).

    Returns:
        list[str]: One line per problem; empty for configs that are not mmdet's.
    """
    if cfg.get('default_scope') != 'mmdet':
        return []
    from mmdet.registry import DATASETS
    problems: List[str] = []
    for loader_key in loaders:
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
                                           classes, where,
                                           needs_annotations=loader_key != 'test_dataloader')
            problems += _missing_evaluator_files(cfg, loader_key)
            if loader_key == loaders[0] and classes:  # (unknown dataset type: no count)
                for key, count in _head_class_counts(cfg.get('model')):
                    if count != len(classes):
                        problems.append(
                            f'{key} is {count} but {where} has {len(classes)} classes '
                            f'{list(classes)}; set it to len(classes)')
    return problems
