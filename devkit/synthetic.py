"""A small synthetic dataset of coloured shapes, written in the real on-disk formats.

COCO instance segmentation (``coco/{train,val}/*.jpg`` + ``coco/annotations/instances_*.json``)
and its ADE20K-format twin (``ade/images/{training,validation}/*.jpg`` +
``ade/annotations/{training,validation}/*.png``, 0 = unlabelled as in ADE20K, so classes are
1..4 on disk and 0..3 after ``reduce_zero_label``) show the same images. Beside the COCO copy:

- COCO panoptic: ``coco/annotations/panoptic_{train,val}.json`` and one RGB PNG per image in
  ``coco/annotations/panoptic_{train,val}/`` (segment id = R + 256 G + 256^2 B); the shapes
  are things, the rest one stuff class, ``background``;
- COCO-stuff style maps for HTC's semantic branch: ``coco/stuffthingmaps/{train,val}/*.png``,
  one label per pixel (the shapes 0..2, background 3).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['CLASSES', 'SEG_CLASSES', 'make_large_shapes_set', 'make_shapes_dataset', 'rgb2id',
           'shapes_cfg_options']

CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', *CLASSES)
# a base hue per class, jittered per instance, so colour helps but shape decides at the edges
BASE_COLOURS = np.array([[220, 60, 50], [50, 170, 70], [60, 90, 220]])


def _polygon(kind: int, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == 0:
        return [(cx + r * math.cos(a), cy + r * math.sin(a))
                for a in np.linspace(0, 2 * math.pi, 32, endpoint=False)]
    if kind == 1:
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """COCO panoptic PNG colours of segment ids: id = R + 256 G + 256^2 B."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 256 ** 2 % 256], -1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of COCO panoptic PNG colours (H, W, 3): the inverse of :func:`id2rgb`."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 ** 2 * rgb[..., 2]


def _places(rng: np.random.Generator, size: int, max_objects: int,
            radius: tuple[float, float] | None, grid: int | None):
    """Centres and radii of non-overlapping shapes: drawn at random (``max_objects`` at most,
    radii ``radius`` px or 9-20% of ``size``), or one shape in a share of the cells of a
    ``grid``-px grid, jittered inside its cell (any number, in linear time)."""
    lo, hi = radius or (size * 0.09, size * 0.2)
    if grid:
        cells = [(x, y) for y in range(0, size - grid + 1, grid)
                 for x in range(0, size - grid + 1, grid)]
        for x, y in cells:
            if rng.random() < 0.6:
                r = float(rng.uniform(lo, min(hi, grid / 2 - 2)))
                cx, cy = rng.uniform(r + 1, grid - r - 1, 2) + (x, y)
                yield cx, cy, r
        return
    placed = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            r = float(rng.uniform(lo, hi))
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            if all(math.hypot(cx - x, cy - y) > r + q + 3 for x, y, q in placed):
                placed.append((cx, cy, r))
                yield cx, cy, r
                break


def _image(rng: np.random.Generator, size: int, max_objects: int,
           radius: tuple[float, float] | None = None, grid: int | None = None):
    """One image, its instances [(class, polygon)], its class-index map and its instance map
    (instance i is i + 1, background 0)."""
    bg = rng.integers(90, 170, 3)
    pixels = np.clip(bg + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    seg = Image.new('L', (size, size), 1)  # 1 = background on disk (0 is "unlabelled")
    inst = Image.new('I', (size, size), 0)
    draw, draw_seg, draw_inst = ImageDraw.Draw(img), ImageDraw.Draw(seg), ImageDraw.Draw(inst)
    instances = []
    for cx, cy, r in _places(rng, size, max_objects, radius, grid):
        kind = int(rng.integers(0, len(CLASSES)))
        poly = _polygon(kind, cx, cy, r)
        jitter = rng.integers(-40, 40, 3)
        colour = tuple(int(c) for c in np.clip(BASE_COLOURS[kind] + jitter, 0, 255))
        draw.polygon(poly, fill=colour)
        draw_seg.polygon(poly, fill=kind + 2)
        instances.append((kind, poly))
        draw_inst.polygon(poly, fill=len(instances))
    return img, instances, seg, np.asarray(inst)


def _coco_annotations(image_id: int, instances: list, first_id: int) -> list[dict]:
    """COCO instance annotations (polygons) of one image's instances, ids from ``first_id``."""
    annotations = []
    for kind, poly in instances:
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        flat = [round(v, 2) for p in poly for v in p]
        area = 0.5 * abs(sum(xs[j] * ys[j - 1] - xs[j - 1] * ys[j] for j in range(len(xs))))
        annotations.append(dict(
            id=first_id + len(annotations), image_id=image_id, category_id=kind + 1,
            bbox=[round(v, 2) for v in box], area=round(area, 2), iscrowd=0,
            segmentation=[flat]))
    return annotations


def make_shapes_dataset(root: str | os.PathLike, num_train: int = 200, num_val: int = 50,
                        size: int = 128, max_objects: int = 3, seed: int = 0,
                        radius: tuple[float, float] | None = None,
                        grid: int | None = None) -> Path:
    """Write the dataset under ``root`` (created); return ``root``. Deterministic in ``seed``.
    ``radius`` (px) and ``grid`` place the shapes as :func:`_places` does."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, ade_split, count in (('train', 'training', num_train),
                                    ('val', 'validation', num_val)):
        panoptic_dir = root / 'coco' / 'annotations' / f'panoptic_{split}'
        stuff_dir = root / 'coco' / 'stuffthingmaps' / split
        for d in (root / 'coco' / split, root / 'coco' / 'annotations', panoptic_dir, stuff_dir,
                  root / 'ade' / 'images' / ade_split, root / 'ade' / 'annotations' / ade_split):
            d.mkdir(parents=True, exist_ok=True)
        coco = dict(images=[], annotations=[],
                    categories=[dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)])
        panoptic = dict(images=coco['images'], annotations=[], categories=[
            *(dict(id=i + 1, name=n, isthing=1, supercategory='shape')
              for i, n in enumerate(CLASSES)),
            dict(id=BACKGROUND_ID, name='background', isthing=0, supercategory='background')])
        for i in range(count):
            img, instances, seg, inst = _image(rng, size, max_objects, radius, grid)
            name = f'{split}_{i:05d}'
            img.save(root / 'coco' / split / f'{name}.jpg', quality=95)
            img.save(root / 'ade' / 'images' / ade_split / f'{name}.jpg', quality=95)
            seg.save(root / 'ade' / 'annotations' / ade_split / f'{name}.png')
            # COCO-stuff style: ADE's 1 = background, 2.. = shapes -> shapes 0.., background 3
            classes = np.asarray(seg).astype(np.uint8) - 2
            classes[classes == 255] = len(CLASSES)
            Image.fromarray(classes).save(stuff_dir / f'{name}.png')
            panoptic['annotations'].append(_panoptic(i, name, inst, instances, panoptic_dir))
            coco['images'].append(dict(id=i, file_name=f'{name}.jpg', height=size, width=size))
            coco['annotations'] += _coco_annotations(i, instances,
                                                     len(coco['annotations']) + 1)
        (root / 'coco' / 'annotations' / f'instances_{split}.json').write_text(json.dumps(coco))
        (root / 'coco' / 'annotations' / f'panoptic_{split}.json').write_text(
            json.dumps(panoptic))
    return root


# the stuff category's id; segment ids: instance i is i + 1, the background segment this
BACKGROUND_ID = 100


def _panoptic(image_id: int, name: str, inst: np.ndarray, instances: list,
              out_dir: Path) -> dict:
    """Write one panoptic PNG; return its annotation entry."""
    ids = np.where(inst == 0, BACKGROUND_ID, inst).astype(np.int64)
    Image.fromarray(id2rgb(ids)).save(out_dir / f'{name}.png')
    segments = []
    for segment_id, category in [(BACKGROUND_ID, BACKGROUND_ID)] + \
            [(j + 1, kind + 1) for j, (kind, _poly) in enumerate(instances)]:
        ys, xs = np.nonzero(ids == segment_id)
        if not len(xs):
            continue
        segments.append(dict(
            id=segment_id, category_id=category, iscrowd=0, area=int(len(xs)),
            bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                  int(ys.max() - ys.min() + 1)]))
    return dict(image_id=image_id, file_name=f'{name}.png', segments_info=segments)


def make_large_shapes_set(root: str | os.PathLike, sizes: tuple[int, ...] = (2048, 2048, 4096),
                          radius: tuple[float, float] = (10, 24), grid: int = 64,
                          seed: int = 1) -> Path:
    """Large images full of small shapes, for sliced against whole-image inference: one
    shape in 60% of the cells of a ``grid``-px grid, radii ``radius`` px, so that many are cut
    by any tiling. Writes ``root/images/large_{i}.png`` and ``root/instances.json`` (COCO);
    returns ``root``. The training crops for it: :func:`make_shapes_dataset` with the same
    ``radius`` and ``grid``."""
    root = Path(root)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coco = dict(images=[], annotations=[],
                categories=[dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)])
    for i, size in enumerate(sizes):
        img, instances, _seg, _inst = _image(rng, size, 0, radius, grid)
        name = f'large_{i}.png'
        img.save(root / 'images' / name)
        coco['images'].append(dict(id=i, file_name=name, height=size, width=size))
        coco['annotations'] += _coco_annotations(i, instances, len(coco['annotations']) + 1)
    (root / 'instances.json').write_text(json.dumps(coco))
    return root


def shapes_cfg_options(root: str | os.PathLike, host: str) -> dict:
    """``--cfg-options`` pointing the demo configs' datasets (and COCO metric) at ``root``.

    Args:
        root: what :func:`make_shapes_dataset` wrote.
        host: 'mmdet' (the COCO copy) or 'mmseg' (the ADE20K copy).
    """
    sub = {'mmdet': 'coco', 'mmseg': 'ade'}[host]
    opts = {f'{loader}.dataset.data_root': str(Path(root) / sub)
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    if host == 'mmdet':
        ann = str(Path(root) / 'coco' / 'annotations' / 'instances_val.json')
        opts['val_evaluator.ann_file'] = opts['test_evaluator.ann_file'] = ann
    return opts
