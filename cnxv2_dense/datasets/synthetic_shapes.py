"""A deterministic synthetic dataset of coloured shapes, for demos and tests that run offline.

One scene generator, two layouts:

* COCO instance segmentation (``write_coco_shapes``): ``<root>/{train,val}/*.png`` and
  ``<root>/annotations/instances_{train,val}.json`` with RLE masks of the visible part of each
  shape (later shapes occlude earlier ones).
* ADE20K-style semantic segmentation (``write_ade_shapes``):
  ``<root>/images/{training,validation}/*.png`` and ``<root>/annotations/{training,validation}/*.png``
  with one label per pixel (0 = background, ``k`` = class ``k``).

Scenes vary the number, size, rotation, colour and overlap of shapes and the background
(a two-colour gradient with noise and distractor stripes). Classes are defined by shape alone.

Two optional knobs make scenes harder (both off by default, so the demo datasets stay
bit-identical): ``texture_prob`` fills shapes and background with random two-colour textures
(stripes, checks, dots, noise) instead of flat colour, so colour and fill no longer tell a shape
from the background; ``clutter`` draws irregular distractor polygons that belong to the
background, so only the outline tells a class shape from clutter. The FCMAE study
(``experiments/fcmae_study/study.py``) uses both.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle')
# Palette for visualising the semantic layout (background first).
PALETTE: Tuple[Tuple[int, int, int], ...] = ((0, 0, 0), (220, 20, 60), (0, 128, 255), (255, 200, 0))
# Objects whose visible part is smaller than this many pixels are dropped (mostly occluded).
MIN_VISIBLE_PIXELS = 40
# Split folder names of the two layouts, (train, val).
COCO_SPLITS = ('train', 'val')
ADE_SPLITS = ('training', 'validation')


def image_name(index: int) -> str:
    """File name of the ``index``-th image (and, in the ADE layout, of its label map)."""
    return f'{index:06d}.png'


def coco_ann_file(root: Path, split: str) -> Path:
    """Annotation file of one split in the COCO layout."""
    return root / 'annotations' / f'instances_{split}.json'


def ade_dirs(root: Path, split: str) -> Tuple[Path, Path]:
    """Image and label-map folders of one split in the ADE layout."""
    return root / 'images' / split, root / 'annotations' / split


def layout_files(root: Union[str, Path], layout: str, num_train: int, num_val: int) -> List[Path]:
    """Every file ``write_coco_shapes`` (``layout='coco'``) or ``write_ade_shapes``
    (``layout='ade'``) writes under ``root`` for these numbers of images."""
    root = Path(root)
    files = []
    for index, count in enumerate((num_train, num_val)):
        names = [image_name(i) for i in range(count)]
        if layout == 'coco':
            split = COCO_SPLITS[index]
            files.append(coco_ann_file(root, split))
            files += [root / split / name for name in names]
        elif layout == 'ade':
            split = ADE_SPLITS[index]
            files += [folder / name for folder in ade_dirs(root, split) for name in names]
        else:
            raise ValueError(f"layout must be 'coco' or 'ade', got {layout!r}")
    return files


@dataclass(frozen=True)
class SceneSpec:
    """Knobs of the scene generator.

    Args:
        image_size (int): Side of the square images in pixels.
        min_objects (int): Fewest shapes per image.
        max_objects (int): Most shapes per image.
        min_radius_frac (float): Smallest shape radius as a fraction of ``image_size``.
        max_radius_frac (float): Largest shape radius as a fraction of ``image_size``.
        texture_prob (float): Probability that a shape, a clutter polygon or the background is
            filled with a random two-colour texture instead of flat colour / a gradient.
            Defaults to 0 (the original scenes).
        clutter (int): Most irregular distractor polygons per image (background class, drawn
            under the shapes); each image draws 0..clutter. Defaults to 0.
    """
    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 4
    min_radius_frac: float = 0.08
    max_radius_frac: float = 0.25
    texture_prob: float = 0.0
    clutter: int = 0


def _shape_polygon(cls: str, cx: float, cy: float, r: float, angle: float) -> List[Tuple[float, float]]:
    corners = {'circle': 48, 'square': 4, 'triangle': 3}[cls]
    # Squares and triangles use their circumradius r; a circle is a fine polygon.
    return [(cx + r * math.cos(angle + 2 * math.pi * k / corners),
             cy + r * math.sin(angle + 2 * math.pi * k / corners)) for k in range(corners)]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(theta) * xx + np.sin(theta) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    # Distractor stripes: thin lines of random colour, not objects.
    for _ in range(rng.integers(0, 4)):
        axis, pos, width = rng.integers(0, 2), rng.integers(0, size), rng.integers(1, 4)
        colour = rng.uniform(0, 255, 3)
        if axis == 0:
            img[pos:pos + width, :] = colour
        else:
            img[:, pos:pos + width] = colour
    img += rng.normal(0, rng.uniform(2, 12), img.shape)
    return img


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random ``(size, size, 3)`` two-colour texture: stripes, checks, dots or smooth noise."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    kind = int(rng.integers(4))
    period = rng.uniform(4, 14)
    if kind == 0:  # stripes at a random angle
        theta = rng.uniform(0, math.pi)
        t = (np.sin(2 * math.pi * (np.cos(theta) * xx + np.sin(theta) * yy) / period) > 0)
    elif kind == 1:  # checks
        t = ((xx // period + yy // period) % 2) > 0
    elif kind == 2:  # dots on a grid
        t = (((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2
             < (period / 3.5) ** 2)
    else:  # blurred noise, thresholded into blobs
        coarse = rng.normal(size=(size // 8 + 2, size // 8 + 2))
        t = np.kron(coarse, np.ones((8, 8)))[:size, :size] > 0
    t = t.astype(np.float64)[..., None]
    return c0 * (1 - t) + c1 * t


def _fill(rng: np.random.Generator, size: int, texture_prob: float) -> np.ndarray:
    """Fill of one shape: a random texture with probability ``texture_prob``, else flat colour
    with a mild left-to-right shading."""
    if texture_prob > 0 and rng.uniform() < texture_prob:
        return _texture(rng, size)
    colour = rng.uniform(0, 255, 3)
    shade = 1 + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, size)[None, :, None]
    return np.broadcast_to(colour * shade, (size, size, 3))


def _polygon_mask(poly: List[Tuple[float, float]], size: int) -> np.ndarray:
    canvas = Image.new('L', (size, size), 0)
    ImageDraw.Draw(canvas).polygon(poly, fill=1)
    return np.asarray(canvas, dtype=bool)


def _clutter_polygon(rng: np.random.Generator, size: int, spec: SceneSpec
                     ) -> List[Tuple[float, float]]:
    """An irregular polygon (5-9 vertices at random radii): not a circle, square or triangle."""
    corners = int(rng.integers(5, 10))
    r = rng.uniform(spec.min_radius_frac, spec.max_radius_frac) * size
    cx, cy = rng.uniform(0, size, 2)
    angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
    radii = r * rng.uniform(0.3, 1.0, corners)
    return [(cx + rr * math.cos(a), cy + rr * math.sin(a)) for a, rr in zip(angles, radii)]


def render_scene(rng: np.random.Generator, spec: SceneSpec) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """Draw one scene.

    Returns:
        tuple: ``image`` (H, W, 3) uint8, ``instance_map`` (H, W) int32 with 0 for background and
        ``k`` for the k-th kept object, and ``labels`` (class index per kept object, 0-based).
    """
    size = spec.image_size
    img = _background(rng, size)
    if spec.texture_prob > 0 and rng.uniform() < spec.texture_prob:
        img = _texture(rng, size) + rng.normal(0, rng.uniform(2, 12), img.shape)
    for _ in range(int(rng.integers(0, spec.clutter + 1)) if spec.clutter else 0):
        mask = _polygon_mask(_clutter_polygon(rng, size, spec), size)
        img[mask] = np.clip(_fill(rng, size, spec.texture_prob), 0, 255)[mask]
    owner = np.zeros((size, size), dtype=np.int32)  # index+1 of the shape on top at each pixel
    classes = []
    for obj in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        cls = int(rng.integers(len(CLASSES)))
        r = rng.uniform(spec.min_radius_frac, spec.max_radius_frac) * size
        cx, cy = rng.uniform(r * 0.6, size - r * 0.6, 2)
        poly = _shape_polygon(CLASSES[cls], cx, cy, r, rng.uniform(0, 2 * math.pi))
        mask = _polygon_mask(poly, size)
        fill = _fill(rng, size, spec.texture_prob)
        img[mask] = np.clip(fill, 0, 255)[mask]
        owner[mask] = obj + 1
        classes.append(cls)
    # Keep shapes with enough visible pixels, renumbered 1..K.
    instance_map = np.zeros_like(owner)
    labels = []
    for obj, cls in enumerate(classes):
        visible = owner == obj + 1
        if visible.sum() >= MIN_VISIBLE_PIXELS:
            labels.append(cls)
            instance_map[visible] = len(labels)
    return np.clip(img, 0, 255).astype(np.uint8), instance_map, labels


def _coco_annotation(mask: np.ndarray, ann_id: int, image_id: int, category_id: int) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    x, y, w, h = mask_utils.toBbox(rle).tolist()
    return dict(id=ann_id, image_id=image_id, category_id=category_id, segmentation=rle,
                area=float(mask_utils.area(rle)), bbox=[x, y, w, h], iscrowd=0)


def write_coco_shapes(root: Union[str, Path], num_train: int = 400, num_val: int = 100,
                      spec: SceneSpec = SceneSpec(), seed: int = 0) -> Dict[str, Path]:
    """Write the COCO-format instance segmentation layout under ``root``.

    Returns:
        dict: split name -> annotation file path.
    """
    root = Path(root)
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(CLASSES)]
    ann_files = {}
    for split, count, split_seed in ((COCO_SPLITS[0], num_train, seed),
                                     (COCO_SPLITS[1], num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        (root / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for index in range(count):
            image, instance_map, labels = render_scene(rng, spec)
            file_name = image_name(index)
            Image.fromarray(image).save(root / split / file_name)
            image_id = index + 1
            images.append(dict(id=image_id, file_name=file_name, height=spec.image_size,
                               width=spec.image_size))
            for k, cls in enumerate(labels):
                annotations.append(_coco_annotation(instance_map == k + 1, len(annotations) + 1,
                                                    image_id, cls + 1))
        ann_file = coco_ann_file(root, split)
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        info = dict(description=f'synthetic shapes ({split})', version='1.0', year=2026)
        ann_file.write_text(json.dumps(dict(info=info, licenses=[], images=images,
                                            annotations=annotations, categories=categories)))
        ann_files[split] = ann_file
    return ann_files


def write_ade_shapes(root: Union[str, Path], num_train: int = 400, num_val: int = 100,
                     spec: SceneSpec = SceneSpec(), seed: int = 0) -> Dict[str, Path]:
    """Write the ADE20K-style semantic segmentation layout under ``root``.

    Label maps hold 0 for background and ``k`` (1-based) for ``CLASSES[k - 1]``.

    Returns:
        dict: split name (``training`` / ``validation``) -> image folder.
    """
    root = Path(root)
    folders = {}
    for split, count, split_seed in ((ADE_SPLITS[0], num_train, seed),
                                     (ADE_SPLITS[1], num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        img_dir, ann_dir = ade_dirs(root, split)
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, instance_map, labels = render_scene(rng, spec)
            semantic = np.zeros(instance_map.shape, dtype=np.uint8)
            for k, cls in enumerate(labels):
                semantic[instance_map == k + 1] = cls + 1
            Image.fromarray(image).save(img_dir / image_name(index))
            Image.fromarray(semantic).save(ann_dir / image_name(index))
        folders[split] = img_dir
    return folders
