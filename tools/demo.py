#!/usr/bin/env python
"""Train a small SwinV2 Mask R-CNN and UperNet from scratch on synthetic shapes, on a CPU.

1. write a synthetic shapes dataset in COCO format and its ADE20K-format twin;
2. train ``configs/demo/mask-rcnn_swinv2-nano_shapes.py`` (mmdet) and
   ``configs/demo/upernet_swinv2-nano_shapes.py`` (mmseg) from scratch on this CPU, through the
   hosts' own runners, datasets and hooks;
3. evaluate on the held-out split with ``CocoMetric`` and ``IoUMetric``;
4. write ``OUT/predictions.png``: ground truth beside predictions, the detections drawn above
   the score threshold with the best F1 on the held-out split (printed).

    python tools/demo.py [--out demo_out] [--det-iters N] [--seg-iters N]

Exits 1 when the models did not learn (bbox mAP < 0.5 or mIoU < 70%).
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout)
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from devkit.demo import (COLOURS, best_f1_threshold, draw_instances, save_sheet, titled,
                         train_and_evaluate, train_options, val_predictions)
from devkit.synthetic import make_shapes_dataset
from swinv2_backbone.hosts.runner import require_host

ROOT = Path(__file__).resolve().parent.parent
DET_CONFIG = ROOT / 'configs' / 'demo' / 'mask-rcnn_swinv2-nano_shapes.py'
SEG_CONFIG = ROOT / 'configs' / 'demo' / 'upernet_swinv2-nano_shapes.py'
TARGETS = {'coco/bbox_mAP': 0.5, 'mIoU': 70}  # mIoU in %, as mmseg reports it
SEG_COLOURS = np.array([[40, 40, 40], *COLOURS], dtype=np.uint8)


def render(det_samples, seg_samples, path: Path, threshold: float, scale: int = 2) -> None:
    """One row per image: GT instances | predicted instances (score >= ``threshold``) | GT
    mask | predicted mask."""
    rows = []
    for det, seg in zip(det_samples, seg_samples):
        img = Image.open(det.img_path).convert('RGB')
        gt, pred = det.gt_instances, det.pred_instances
        keep = pred.scores >= threshold
        panels = [
            titled(draw_instances(img, gt.bboxes.numpy(), gt.labels.tolist(),
                                  gt.masks.to_ndarray(), scale), 'ground truth'),
            titled(draw_instances(img, pred.bboxes[keep].numpy(), pred.labels[keep].tolist(),
                                  pred.masks[keep].numpy(), scale),
                   f'Mask R-CNN (score >= {threshold:.2f})'),
        ]
        for title, data in (('ground-truth classes', seg.gt_sem_seg.data),
                            ('UperNet', seg.pred_sem_seg.data)):
            labels = data[0].numpy().clip(0, len(SEG_COLOURS) - 1)
            panels.append(titled(Image.fromarray(SEG_COLOURS[labels]).resize(
                (img.width * scale, img.height * scale), Image.NEAREST), title))
        rows.append(panels)
    save_sheet(rows, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='demo_out', help='output directory')
    parser.add_argument('--det-iters', type=int, default=400)
    parser.add_argument('--seg-iters', type=int, default=600)
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    args = parser.parse_args(argv)
    try:  # before any work: the run takes minutes
        for host in ('mmdet', 'mmseg'):
            require_host(host)
    except ImportError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    start = time.perf_counter()

    print(f'[demo] writing {args.num_train}+{args.num_val} synthetic images to {out / "data"}')
    make_shapes_dataset(out / 'data', args.num_train, args.num_val)

    print(f'[demo] training SwinV2 Mask R-CNN for {args.det_iters} iterations (mmdet)')
    det_runner, det_metrics = train_and_evaluate(
        DET_CONFIG, out / 'det', train_options(out / 'data', 'mmdet', args.det_iters))
    print(f'[demo] training SwinV2 UperNet for {args.seg_iters} iterations (mmseg)')
    seg_runner, seg_metrics = train_and_evaluate(
        SEG_CONFIG, out / 'seg', train_options(out / 'data', 'mmseg', args.seg_iters))

    picture = out / 'predictions.png'
    det_samples = val_predictions(det_runner)
    threshold, f1 = best_f1_threshold(det_samples)
    print(f'[demo] Mask R-CNN: score threshold {threshold:.2f} gives the best F1 on the held-out '
          f'split ({f1:.3f}); the picture draws what scores above it')
    render(det_samples[:4], val_predictions(seg_runner)[:4], picture, threshold)
    elapsed = time.perf_counter() - start

    # each in its host's unit, as tools/test.py prints it: CocoMetric fractions, IoUMetric %
    metrics = {**det_metrics, **seg_metrics}
    print('\n[demo] held-out split, %d images:' % args.num_val)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'mIoU', 'aAcc'):
        target = f'  (target >= {TARGETS[key]})' if key in TARGETS else ''
        print(f'  {key:18} {float(metrics[key]):8.{2 if key in seg_metrics else 3}f}{target}')
    print(f'[demo] predictions: {picture}')
    print(f'[demo] total time {elapsed / 60:.1f} min on {torch.get_num_threads()} threads')
    learned = all(metrics[k] >= v for k, v in TARGETS.items())
    print('[demo] ' + ('the models learned' if learned else 'BELOW TARGET'))
    return 0 if learned else 1


if __name__ == '__main__':
    sys.exit(main())
