"""Image files checked before they are trained or tested on: empty, foreign and truncated files
(PNG, JPEG) are told from whole ones, including JPEGs whose header still reads; and inputs of
images (tools/infer.py's image or folder, the FCMAE image folder) that hold none are named."""
import numpy as np
import pytest
from PIL import Image, ImageFile

from cnxv2_dense.checks import (UnusableImage, checked_image_size, image_folder_problems,
                                image_input_problems, images_in)
from cnxv2_dense.datasets import IMG_EXTENSIONS, ImageFolderDataset


@pytest.fixture
def photo(tmp_path):
    """A 64x48 JPEG with detail in it (noise), so that its image data outweigh its header."""
    path = tmp_path / 'photo.jpg'
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def cut(path, keep: float = 2 / 3):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def test_whole_images_pass_with_their_size(photo, tmp_path):
    assert checked_image_size(str(photo)) == (64, 48)
    grey = tmp_path / 'grey.jpg'
    Image.open(photo).convert('L').save(grey)
    cmyk = tmp_path / 'cmyk.jpg'
    Image.open(photo).convert('CMYK').save(cmyk)
    trailer = tmp_path / 'trailer.jpg'  # bytes after the image, as some cameras write
    trailer.write_bytes(photo.read_bytes() + b'\x00' * 7 + b'MOTION PHOTO TRAILER' * 10)
    padded = tmp_path / 'padded.jpg'
    padded.write_bytes(photo.read_bytes() + b'\x00' * 16)
    png = tmp_path / 'photo.png'
    Image.open(photo).save(png)
    for path in (grey, cmyk, trailer, padded, png):
        assert checked_image_size(str(path)) == (64, 48), path.name


def test_truncated_jpeg_and_png_are_refused(photo, tmp_path):
    cut(photo)
    with Image.open(photo) as image:  # what a header check sees: a 64x48 JPEG
        assert image.size == (64, 48)
        image.verify()
    with pytest.raises(UnusableImage, match=r'^a truncated JPEG: its image data end early '
                       r'\(OSError: image file is truncated'):
        checked_image_size(str(photo))
    png = tmp_path / 'cut.png'
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3),
                                                      dtype=np.uint8)).save(png)
    with pytest.raises(UnusableImage, match='^not a readable image'):
        checked_image_size(str(cut(png)))
    header_only = tmp_path / 'header.jpg'
    header_only.write_bytes(photo.read_bytes()[:300])
    with pytest.raises(UnusableImage, match='^not a readable image'):
        checked_image_size(str(header_only))
    for name, data in (('empty.jpg', b''), ('page.jpg', b'<html>404</html>')):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnusableImage, match='^not a readable image'):
            checked_image_size(str(tmp_path / name))


def test_a_truncated_jpeg_is_refused_where_pil_is_told_to_load_truncated_images(
        photo, monkeypatch):
    monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)  # as some user code sets it
    assert checked_image_size(str(photo)) == (64, 48)
    with pytest.raises(UnusableImage, match='does not end with the end-of-image marker'):
        checked_image_size(str(cut(photo)))


def test_fcmae_image_folder_skips_a_truncated_jpeg(photo, tmp_path):
    """FCMAE pretraining (check_files=True, the tool's default) leaves a JPEG cut short out,
    reporting it, as it does an unreadable file."""
    whole = tmp_path / 'whole.jpg'
    whole.write_bytes(photo.read_bytes())
    cut(photo)
    dataset = ImageFolderDataset(data_root=str(tmp_path), check_files=True)
    assert [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))] == [str(whole)]
    assert dataset.skipped_files == [str(photo)]


def test_an_input_of_images_names_what_is_missing_and_each_unusable_image(photo, tmp_path):
    """tools/infer.py's INPUT: nothing there, a folder without images, and every image that
    cannot be used, each in one line."""
    nothing = tmp_path / 'nothing'
    assert images_in(nothing) == []
    assert image_input_problems(nothing, []) == [
        f'{nothing}: no image or folder there; give an image or a folder of images']
    notes = tmp_path / 'notes'
    notes.mkdir()
    (notes / 'readme.txt').write_text('no images here')
    assert images_in(notes) == []
    assert image_input_problems(notes, []) == [
        f'{notes}: no images (.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp) under this folder '
        '(searched recursively); give an image or a folder of images']

    folder = tmp_path / 'photos'
    (folder / 'more').mkdir(parents=True)
    whole = folder / 'more' / 'WHOLE.JPG'  # suffixes match in any case
    whole.write_bytes(photo.read_bytes())
    truncated = folder / 'cut.jpg'
    truncated.write_bytes(photo.read_bytes())
    cut(truncated)
    (folder / 'empty.png').write_bytes(b'')
    (folder / 'labels.txt').write_text('not an image: not listed')
    images = images_in(folder)
    assert images == [truncated, folder / 'empty.png', whole]
    problems = image_input_problems(folder, images)
    assert len(problems) == 2
    assert problems[0].startswith(f'{truncated}: a truncated JPEG')
    assert problems[1].startswith(f'{folder / "empty.png"}: not a readable image')
    assert all(p.endswith('; replace it, or move it out of the input') for p in problems)
    assert images_in(whole) == [whole] and image_input_problems(whole, [whole]) == []


def test_an_fcmae_image_folder_without_images_is_named(photo, tmp_path):
    gone = tmp_path / 'gone'
    assert image_folder_problems(str(gone), IMG_EXTENSIONS) == [
        f'{gone}: not a folder; give the folder of the images to train on']
    assert image_folder_problems(str(photo), IMG_EXTENSIONS) == [  # an image is no folder
        f'{photo}: not a folder; give the folder of the images to train on']
    folder = tmp_path / 'train'
    (folder / 'class_a').mkdir(parents=True)
    (folder / 'class_a' / 'list.txt').write_text('')
    [problem] = image_folder_problems(str(folder), IMG_EXTENSIONS)
    assert problem == (f'{folder}: no images ({", ".join(IMG_EXTENSIONS)}) under this folder '
                       '(searched recursively); give the folder of the images to train on')
    (folder / 'class_a' / 'x.PNG').write_bytes(b'')  # found; whether it reads is the dataset's
    assert image_folder_problems(str(folder), IMG_EXTENSIONS) == []
