"""Is an image file usable: not empty, an image, and whole (a truncated PNG or JPEG is not)? And
does an input path of images (``tools/infer.py``'s image or folder, the FCMAE image folder) hold
any?

Reading the header is not enough: a JPEG cut short (an interrupted copy or download) opens and
reports its full size, and PIL's ``verify()`` does not look at JPEG image data. Such a file then
fails in the image loader when the first batch draws it (OpenCV 5 returns nothing: mmcv's
"failed to load image"), or is read with the missing part filled in. A whole JPEG ends with its
end-of-image marker; one that does not is decoded (at 1/8 scale, which still reads all of its
data) to tell a truncated file from one with bytes appended after the image.
"""
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from PIL import Image, ImageFile

JPEG_END = b'\xff\xd9'  # the end-of-image marker
# What tools/infer.py looks for in a folder.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class UnusableImage(ValueError):
    """An image file that cannot be used; the message says why (without the path)."""


def _ends_with_jpeg_end(path: str) -> bool:
    with open(path, 'rb') as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 64))
        return f.read().rstrip(b'\x00').endswith(JPEG_END)  # (some writers pad with zeros)


def _decode_jpeg(path: str) -> None:
    """Decode all of a JPEG's data (at 1/8 scale: about 3 ms for 640x480); raises if it ends
    early."""
    with Image.open(path) as image:
        width, height = image.size
        image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
        image.load()


def checked_image_size(path: str) -> Tuple[int, int]:
    """The ``(width, height)`` of a usable image file.

    Reads the header (a PNG through its checksums); a JPEG that does not end with its
    end-of-image marker is decoded.

    Args:
        path (str): The image file.

    Returns:
        tuple[int, int]: Width and height in pixels.

    Raises:
        UnusableImage: The file is empty, not an image, or a truncated PNG or JPEG. Other
            formats (BMP, TIFF, WebP) are checked through their header only.
    """
    try:
        with Image.open(path) as image:
            size, image_format = image.size, image.format
            image.verify()
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise UnusableImage(f'not a readable image ({type(err).__name__}: {err})') from err
    if image_format == 'JPEG' and not _ends_with_jpeg_end(path):
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # set by the user's code: PIL would fill it in
            raise UnusableImage('a truncated JPEG: it does not end with the end-of-image marker')
        try:
            _decode_jpeg(path)
        except Exception as err:
            raise UnusableImage(f'a truncated JPEG: its image data end early '
                                f'({type(err).__name__}: {err})') from err
    return size


def image_problem(path: str, size: Optional[Sequence[int]] = None,
                  fix: str = 'replace the file, or leave it out of the dataset') -> Optional[str]:
    """Why ``path`` is no usable image (empty, not an image, a truncated PNG or JPEG), or has not
    the recorded ``(width, height)``; None when it is fine (see :func:`checked_image_size`).

    Args:
        path (str): The image file.
        size (Sequence[int], optional): The ``(width, height)`` it must have. Defaults to None.
        fix (str): What to do about an unusable file, appended to its problem.
    """
    try:
        actual = checked_image_size(path)
    except UnusableImage as err:
        return f'{path}: {err}; {fix}'
    if size is not None and tuple(actual) != tuple(size):
        return (f'{path}: {actual[0]}x{actual[1]} pixels, but the annotation file records '
                f'{size[0]}x{size[1]}; fix width / height there (masks are drawn at that size)')
    return None


def images_in(path: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> List[Path]:
    """The image ``path`` itself, or every file under the folder ``path`` (searched recursively)
    whose lower-cased suffix is one of ``suffixes``, sorted; empty when there is none.

    Args:
        path (Path): An image file or a folder.
        suffixes (Sequence[str]): The suffixes of images in a folder. Defaults to
            :data:`IMAGE_SUFFIXES`.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob('*') if p.suffix.lower() in suffixes)


def image_input_problems(path: Path, images: Sequence[Path],
                         suffixes: Sequence[str] = IMAGE_SUFFIXES,
                         fix: str = 'replace it, or move it out of the input') -> List[str]:
    """Problems of an input of images: nothing at ``path``, a folder without images, and each of
    its ``images`` (from :func:`images_in`) that cannot be used.

    Args:
        path (Path): The image or folder given.
        images (Sequence[Path]): The images found there.
        suffixes (Sequence[str]): The suffixes searched in a folder, named when none was found.
            Defaults to :data:`IMAGE_SUFFIXES`.
        fix (str): What to do about an unusable image. Defaults to replacing it or moving it
            out of the input.

    Returns:
        list[str]: One line per problem.
    """
    if not path.exists():
        return [f'{path}: no image or folder there; give an image or a folder of images']
    if not images:
        return [f'{path}: no images ({", ".join(suffixes)}) under this folder (searched '
                'recursively); give an image or a folder of images']
    return [problem for problem in (image_problem(str(image), fix=fix) for image in images)
            if problem is not None]


def image_folder_problems(folder: str, extensions: Sequence[str]) -> List[str]:
    """One line when ``folder`` is not a folder, or holds no file ending in one of the
    ``extensions`` (searched recursively, symlinks followed, as the FCMAE image folder dataset
    lists them; the search stops at the first image). Whether the images can be read is left to
    the dataset, which skips those that cannot.

    Args:
        folder (str): The image folder.
        extensions (Sequence[str]): The image file extensions (case-insensitive).
    """
    if not os.path.isdir(folder):
        return [f'{folder}: not a folder; give the folder of the images to train on']
    endings = tuple(e.lower() for e in extensions)
    for _, _, files in os.walk(folder, followlinks=True):
        if any(name.lower().endswith(endings) for name in files):
            return []
    return [f'{folder}: no images ({", ".join(extensions)}) under this folder (searched '
            'recursively); give the folder of the images to train on']
