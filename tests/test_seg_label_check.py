"""Label maps checked before training: each bad one named with its problem and fix, instead of
torch's bare "Target 5 is out of bounds" when it is first drawn."""
import numpy as np
import pytest
from PIL import Image

from cnxv2_dense.checks import check_label_map, check_label_maps


@pytest.fixture
def image(tmp_path):
    path = tmp_path / 'image.png'
    Image.new('RGB', (8, 6)).save(path)
    return str(path)


def label_map(tmp_path, values, name='map.png', mode='L'):
    path = tmp_path / name
    Image.fromarray(np.asarray(values, dtype=np.uint8), mode='L').convert(mode).save(path)
    return str(path)


def grid(*values):
    """An 8x6 map holding ``values`` in its first pixels, 0 elsewhere."""
    pixels = np.zeros((6, 8), dtype=np.uint8)
    pixels.flat[:len(values)] = values
    return pixels


def test_valid_maps_pass(tmp_path, image):
    assert check_label_map(label_map(tmp_path, grid(0, 1, 2, 3, 255)), image, 4) is None
    palettized = tmp_path / 'p.png'
    Image.fromarray(grid(0, 3), mode='L').convert('P').save(palettized)  # indices, a palette
    assert Image.open(palettized).mode == 'P'
    assert check_label_map(str(palettized), image, 4) is None


def test_values_that_are_no_class_are_named(tmp_path, image):
    problem = check_label_map(label_map(tmp_path, grid(0, 5, 7)), image, 4)
    assert 'map.png' in problem and 'values [5, 7]' in problem and '0..3' in problem


def test_reduce_zero_label_shifts_the_valid_range(tmp_path, image):
    path = label_map(tmp_path, grid(0, 1, 4, 255))  # 0 and 255 ignored, 1..4 -> classes 0..3
    assert check_label_map(path, image, 4, reduce_zero_label=True) is None
    problem = check_label_map(label_map(tmp_path, grid(5), 'five.png'), image, 4,
                              reduce_zero_label=True)
    assert 'values [5]' in problem and '1..4' in problem


def test_label_map_remapping_is_applied(tmp_path, image):
    path = label_map(tmp_path, grid(0, 9))
    assert check_label_map(path, image, 4, label_map={9: 2}) is None
    assert 'values [9]' in check_label_map(path, image, 4)


def test_colour_jpeg_size_and_unreadable_maps(tmp_path, image):
    rgb = label_map(tmp_path, grid(1), 'rgb.png', mode='RGB')
    assert 'rgb.png: a RGB image' in check_label_map(rgb, image, 4)
    jpeg = tmp_path / 'map.jpg'
    Image.fromarray(grid(1), mode='L').save(jpeg)
    assert 'map.jpg: saved as JPEG' in check_label_map(str(jpeg), image, 4)
    small = tmp_path / 'small.png'
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode='L').save(small)
    problem = check_label_map(str(small), image, 4)
    assert 'small.png: 4x4 pixels' in problem and '8x6' in problem
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    assert 'broken.png: cannot be read' in check_label_map(str(broken), image, 4)


def test_every_map_is_checked_once_and_all_problems_reported(tmp_path, image):
    good = label_map(tmp_path, grid(1), 'good.png')
    bad = label_map(tmp_path, grid(6), 'bad.png')
    rgb = label_map(tmp_path, grid(1), 'rgb.png', mode='RGB')
    samples = [dict(seg_map_path=p, img_path=image) for p in (good, bad, rgb, bad)]
    problems = check_label_maps(samples, num_classes=4)
    assert len(problems) == 2
    assert problems[0].startswith(bad) and problems[1].startswith(rgb)


def test_an_unreadable_image_is_named_with_its_label_map(tmp_path):
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    problem = check_label_map(label_map(tmp_path, grid(1)), str(empty), 4)
    assert problem.startswith(f'{empty}: the image of {tmp_path / "map.png"} cannot be used: '
                              'not a readable image')
    assert problem.endswith('replace it, or remove it and its label map')


def test_a_truncated_jpeg_image_is_named_with_its_label_map(tmp_path):
    """ADE20K-style sets keep their images as JPEG: one cut short is named before training."""
    jpeg = tmp_path / 'image.jpg'
    pixels = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(jpeg, quality=90)
    seg_map = label_map(tmp_path, np.zeros((48, 64)))
    assert check_label_map(seg_map, str(jpeg), 4) is None
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[:len(data) * 2 // 3])
    assert Image.open(jpeg).size == (64, 48)  # its header still reads
    problem = check_label_map(seg_map, str(jpeg), 4)
    assert problem.startswith(f'{jpeg}: the image of {seg_map} cannot be used: a truncated JPEG')
