#!/usr/bin/env python
"""A query-based detector learns on SwinV2: train a small SwinV2 DINO from scratch on this CPU.

1. write the synthetic shapes dataset in COCO format (devkit/synthetic.py);
2. train ``configs/demo/dino_swinv2-nano_shapes.py`` through mmdet's own runner, recording
   every iteration's loss;
3. evaluate on the held-out split with ``CocoMetric``;
4. write ``OUT/predictions_dino.png``: ground truth beside predictions.

    python tools/demo_dino.py [--out demo_out] [--iters N]

Exits 1 when a loss was not finite or the detector did not learn (bbox mAP < 0.5).
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout)
import argparse
import math
import sys
import time
from pathlib import Path

import torch
from mmengine.hooks import Hook
from PIL import Image

from devkit.demo import (best_f1_threshold, draw_instances, save_sheet, titled,
                         train_and_evaluate, train_options, val_predictions)
from devkit.synthetic import make_shapes_dataset, shapes_cfg_options

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / 'configs' / 'demo' / 'dino_swinv2-nano_shapes.py'
TARGET = 0.5  # bbox mAP on the held-out images


class LossRecord(Hook):
    """Every training iteration's total loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(float(outputs['loss'].detach()))


def render(samples, path: Path, threshold: float, scale: int = 2) -> None:
    """One row per image: ground truth | DINO's boxes with score >= ``threshold``."""
    rows = []
    for det in samples:
        img = Image.open(det.img_path).convert('RGB')
        gt, pred = det.gt_instances, det.pred_instances
        keep = pred.scores >= threshold
        panels = [  # boxes only: DINO predicts no masks
            titled(draw_instances(img, gt.bboxes.numpy(), gt.labels.tolist(), [], scale),
                   'ground truth'),
            titled(draw_instances(img, pred.bboxes[keep].numpy(), pred.labels[keep].tolist(),
                                  [], scale), f'DINO (score >= {threshold:.2f})'),
        ]
        rows.append(panels)
    save_sheet(rows, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='demo_out', help='output directory')
    parser.add_argument('--iters', type=int, default=None,
                        help="default: the config's max_iters (its lr schedule stays as it is)")
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=50)
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    start = time.perf_counter()

    print(f'[demo] writing {args.num_train}+{args.num_val} synthetic images to '
          f'{out / "data_dino"}')
    make_shapes_dataset(out / 'data_dino', args.num_train, args.num_val)
    options = train_options(out / 'data_dino', 'mmdet', args.iters) if args.iters else \
        shapes_cfg_options(out / 'data_dino', 'mmdet')
    print('[demo] training SwinV2 DINO from scratch (mmdet)')
    losses = LossRecord()
    runner, metrics = train_and_evaluate(CONFIG, out / 'dino', options, hooks=[losses])
    picture = out / 'predictions_dino.png'
    samples = val_predictions(runner)
    threshold, f1 = best_f1_threshold(samples)
    print(f'[demo] DINO: score threshold {threshold:.2f} gives the best F1 on the held-out split '
          f'({f1:.3f}); the picture draws what scores above it')
    render(samples[:4], picture, threshold)
    elapsed = time.perf_counter() - start

    finite = all(math.isfinite(v) for v in losses.losses)
    mAP = float(metrics['coco/bbox_mAP'])
    print(f'\n[demo] {len(losses.losses)} iterations, loss {losses.losses[0]:.2f} -> '
          f'{losses.losses[-1]:.2f}, ' + ('finite throughout' if finite else 'NOT FINITE'))
    print(f'[demo] held-out split, {args.num_val} images:')
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        target = f'  (target >= {TARGET})' if key == 'coco/bbox_mAP' else ''
        print(f'  {key:18} {float(metrics[key]):8.3f}{target}')
    print(f'[demo] predictions: {picture}')
    print(f'[demo] total time {elapsed / 60:.1f} min on {torch.get_num_threads()} threads')
    learned = finite and mAP >= TARGET
    print('[demo] ' + ('DINO learned' if learned else 'BELOW TARGET'))
    return 0 if learned else 1


if __name__ == '__main__':
    sys.exit(main())
