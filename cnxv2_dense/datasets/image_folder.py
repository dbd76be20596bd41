"""A dataset of every image under a folder (recursive), for self-supervised pretraining.

No labels and no annotation file: ``ImageFolderDataset(data_root='data/imagenet/train')`` lists
the images below ``data_root`` (any depth, common image types, sorted) and runs the pipeline on
each. Unreadable files are reported once and skipped: up front with ``check_files=True`` (every
file is opened and verified before training), and otherwise when loading fails at run time
(:class:`cnxv2_dense.LoadImage` returns None, the dataset reports the path and draws another).
"""
import logging
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set, Tuple, Union

from mmengine.dataset import BaseDataset
from mmengine.logging import MMLogger, print_log

from ..registry import DATASETS

IMG_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff',
                                   '.ppm', '.pgm', '.pbm')


def list_images(root: Union[str, Path],
                extensions: Sequence[str] = IMG_EXTENSIONS) -> List[str]:
    """Paths of all files under ``root`` (recursive, symlinks followed) whose lower-cased
    extension is in ``extensions``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'Image folder not found: {root}')
    suffixes = tuple(e.lower() for e in extensions)
    paths = []
    for folder, _, files in os.walk(root, followlinks=True):
        paths += [os.path.join(folder, f) for f in files if f.lower().endswith(suffixes)]
    return sorted(paths)


def is_readable_image(path: str) -> bool:
    """Whether the file is a whole image: PIL identifies and verifies it (header and structure),
    and a JPEG is not cut short
    (:func:`~cnxv2_dense.checks.checked_image_size`)."""
    from ..checks.images import UnusableImage, checked_image_size
    try:
        checked_image_size(path)
        return True
    except UnusableImage:
        return False


@DATASETS.register_module()
class ImageFolderDataset(BaseDataset):
    """All images under ``data_root``, without labels.

    Each item of the data list is ``dict(img_path=...)``; the pipeline loads and transforms it.

    Args:
        data_root (str): The image folder (searched recursively).
        pipeline (Sequence[dict | Callable]): Transforms. Defaults to ().
        extensions (Sequence[str]): File extensions to include (case-insensitive). Defaults to
            :data:`IMG_EXTENSIONS`.
        check_files (bool): Open and verify every file when the list is built, and leave out
            (reporting them once) those that cannot be read. Costs one header parse per file.
            Defaults to False.
        **kwargs: Passed to :class:`mmengine.dataset.BaseDataset` (``lazy_init``,
            ``max_refetch``, ``indices``, ...).
    """

    METAINFO: dict = dict()

    def __init__(self,
                 data_root: str,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 check_files: bool = False,
                 **kwargs) -> None:
        self.extensions = tuple(extensions)
        self.check_files = check_files
        self.skipped_files: List[str] = []
        self._reported: Set[str] = set()
        super().__init__(data_root=data_root, pipeline=list(pipeline), **kwargs)

    def load_data_list(self) -> List[dict]:
        paths = list_images(self.data_root, self.extensions)
        if self.check_files:
            readable = [p for p in paths if is_readable_image(p)]
            self.skipped_files = sorted(set(paths) - set(readable))
            for path in self.skipped_files:
                self._report(path)
            paths = readable
        if not paths:
            raise FileNotFoundError(
                f'No readable images ({", ".join(self.extensions)}) found under '
                f'{self.data_root}')
        return [dict(img_path=p) for p in paths]

    def _report(self, path: str) -> None:
        if path in self._reported:
            return
        self._reported.add(path)
        print_log(f'Skipping unreadable image {path}', logger=MMLogger.get_current_instance(),
                  level=logging.WARNING)

    def prepare_data(self, idx: int) -> Optional[dict]:
        data = super().prepare_data(idx)
        if data is None:  # the loader could not read the file: BaseDataset draws another
            self._report(self.get_data_info(idx)['img_path'])
        return data
