"""Is an image file usable: not empty, an image, and whole (a truncated PNG or JPEG is not)?

Reading the header is not enough: a JPEG cut short (an interrupted copy or download) opens and
reports its full size, and PIL's ``verify()`` does not look at JPEG image data. Such a file then
fails in the image loader when the first batch draws it (OpenCV 5 returns nothing: mmcv's
"failed to load image"), or is read with the missing part filled in. A whole JPEG ends with its
end-of-image marker; one that does not is decoded (at 1/8 scale, which still reads all of its
data) to tell a truncated file from one with bytes appended after the image.
"""
from typing import Tuple

from PIL import Image, ImageFile

JPEG_END = b'\xff\xd9'  # the end-of-image marker


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
