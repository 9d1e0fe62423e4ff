"""Whole-image, sliced and SAHI inference of one detector on a COCO set of large images, scored
the same way: COCO bbox and segm mAP (pycocotools, as mmdet's CocoMetric), duplicates at tile
borders, peak memory and time per image.

A duplicate is a second (third, ...) prediction of one ground-truth object: each prediction
scoring at least ``DUPLICATE_SCORE`` is assigned to the object of its class it overlaps most,
if most of the prediction's box lies on that object's box (an object cut by a tile border gives
partial boxes that lie on it); an object with n such predictions counts n - 1.
"""
from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np

from swinv2_backbone.apps.large import (GIB, LargeImageInferencer, detections_to_coco,
                                        peak_memory)

__all__ = ['DUPLICATE_SCORE', 'coco_scores', 'duplicates', 'run_ours', 'run_sahi']

DUPLICATE_SCORE = 0.3  # SAHI's default confidence threshold


def coco_scores(gt_file: str | Path, results: list[dict]) -> dict[str, float]:
    """COCO bbox and segm mAP (and mAP@50) of ``results`` against ``gt_file``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    scores = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        for kind in ('bbox', 'segm'):
            entries = [r for r in results if kind == 'bbox' or 'segmentation' in r]
            if not entries:
                continue
            ev = COCOeval(gt, gt.loadRes(entries), kind)
            ev.params.maxDets = [100, 1000, 10000]  # every object of a large image counts
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            scores[f'{kind}_mAP'], scores[f'{kind}_mAP_50'] = float(ev.stats[0]), \
                float(ev.stats[1])
    return scores


def _xyxy(box: list[float]) -> np.ndarray:
    x, y, w, h = box
    return np.array([x, y, x + w, y + h], np.float64)


def duplicates(gt: dict, results: list[dict], score: float = DUPLICATE_SCORE) -> int:
    """Duplicates (module docstring) of ``results`` (COCO entries) against the COCO dict."""
    objects: dict[tuple[int, int], list[np.ndarray]] = {}
    for ann in gt['annotations']:
        objects.setdefault((ann['image_id'], ann['category_id']), []).append(_xyxy(ann['bbox']))
    counts: dict[tuple, int] = {}
    for r in results:
        if r['score'] < score:
            continue
        boxes = objects.get((r['image_id'], r['category_id']))
        if not boxes:
            continue
        p = _xyxy(r['bbox'])
        g = np.stack(boxes)
        w = (np.minimum(p[2], g[:, 2]) - np.maximum(p[0], g[:, 0])).clip(0)
        h = (np.minimum(p[3], g[:, 3]) - np.maximum(p[1], g[:, 1])).clip(0)
        inter = w * h
        best = int(inter.argmax())
        area = (p[2] - p[0]) * (p[3] - p[1])
        if area > 0 and inter[best] / area >= 0.5:
            key = (r['image_id'], r['category_id'], best)
            counts[key] = counts.get(key, 0) + 1
    return sum(n - 1 for n in counts.values())


def run_ours(infer: LargeImageInferencer, gt: dict, image_dir: Path) -> tuple[list, list]:
    """COCO results of every image, and per image (seconds, peak GiB, mode, tiles)."""
    results, stats = [], []
    for image in gt['images']:
        r = infer(image_dir / image['file_name'])
        for entry in detections_to_coco(r.detections, r.height, r.width):
            results.append(dict(entry, image_id=image['id']))
        stats.append((r.seconds, r.peak_gib, r.mode, r.tiles))
    return results, stats


def run_sahi(config: str, checkpoint: str, gt: dict, image_dir: Path, tile: tuple[int, int],
             overlap: float, score_thr: float, standard_pred: bool) -> tuple[list, list]:
    """The same with SAHI's mmdet wrapper and ``get_sliced_prediction`` (its defaults:
    greedy non-maximum merging, intersection over the smaller box >= 0.5, and with
    ``standard_pred`` one more prediction on the whole image resized to the tile)."""
    from sahi import AutoDetectionModel
    from sahi.predict import get_sliced_prediction
    model = AutoDetectionModel.from_pretrained(
        model_type='mmdet', model_path=checkpoint, config_path=config,
        confidence_threshold=score_thr, device='cpu', image_size=max(tile))
    results, stats = [], []
    for image in gt['images']:
        start = time.perf_counter()
        with peak_memory() as m:
            pred = get_sliced_prediction(
                str(image_dir / image['file_name']), model, slice_height=tile[0],
                slice_width=tile[1], overlap_height_ratio=overlap, overlap_width_ratio=overlap,
                perform_standard_pred=standard_pred, verbose=0)
        for entry in pred.to_coco_predictions(image_id=image['id']):
            entry = dict(entry, category_id=entry['category_id'] + 1)  # SAHI counts from 0
            if not entry.get('segmentation'):
                entry.pop('segmentation', None)
            results.append(entry)
        stats.append((time.perf_counter() - start, m.peak / GIB, 'sliced', None))
    return results, stats


def load_gt(gt_file: str | Path) -> dict:
    return json.loads(Path(gt_file).read_text())
