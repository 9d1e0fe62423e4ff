#!/usr/bin/env python
"""The main job on an embedded default: train a SwinV2 detector and segmenter that learn.

1. write a synthetic shapes dataset in COCO format and its ADE20K-format twin;
2. train ``configs/demo/mask-rcnn_swinv2-nano_shapes.py`` (mmdet) and
   ``configs/demo/upernet_swinv2-nano_shapes.py`` (mmseg) from scratch on this CPU, through the
   hosts' own runners, datasets and hooks;
3. evaluate on the held-out split with ``CocoMetric`` and ``IoUMetric``;
4. write ``OUT/predictions.png``: ground truth beside predictions, the detections drawn above
   the score threshold with the best F1 on the held-out split (printed).

    python tools/demo.py [--out demo_out] [--det-iters N] [--seg-iters N]

Exits 1 when the models did not learn (bbox mAP < 0.5 or mIoU < 0.7).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook
from PIL import Image, ImageDraw

from swinv2_backbone.files import atomic_write
from swinv2_backbone.hosts.runner import build_runner
from swinv2_backbone.devkit.synthetic import make_shapes_dataset, shapes_cfg_options

ROOT = Path(__file__).resolve().parent.parent
DET_CONFIG = ROOT / 'configs' / 'demo' / 'mask-rcnn_swinv2-nano_shapes.py'
SEG_CONFIG = ROOT / 'configs' / 'demo' / 'upernet_swinv2-nano_shapes.py'
TARGETS = {'coco/bbox_mAP': 0.5, 'mIoU': 0.7}
COLOURS = [(230, 80, 60), (60, 190, 90), (70, 110, 240)]
SEG_COLOURS = np.array([[40, 40, 40], *COLOURS], dtype=np.uint8)


def train_options(root: Path, host: str, iters: int) -> dict:
    """Train ``iters`` iterations on the data under ``root``; the loop validates at the end."""
    return {**shapes_cfg_options(root, host), 'train_cfg.max_iters': iters,
            'train_cfg.val_interval': iters, 'default_hooks.checkpoint.interval': iters}


class KeepMetrics(Hook):
    """Keeps what the last validation measured."""

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = dict(metrics or {})


def train_and_evaluate(config: Path, work_dir: Path, options: dict, hooks: list = ()):
    runner = build_runner(config, work_dir=str(work_dir), cfg_options=options)
    keep = KeepMetrics()
    runner.register_hook(keep, priority='LOWEST')
    for hook in hooks:
        runner.register_hook(hook)
    runner.train()
    return runner, keep.metrics


def val_predictions(runner) -> list:
    """The model's predictions on every validation image, in the loader's order."""
    runner.model.eval()
    samples = []
    with torch.no_grad():
        for batch in runner.val_dataloader:
            samples += runner.model.val_step(batch)
    return samples


def best_f1_threshold(samples, iou: float = 0.5) -> tuple[float, float]:
    """The score threshold whose detections have the best F1 against the ground truth
    (a detection is right when it overlaps an unmatched box of its class by ``iou``), and that
    F1: what a picture should show, where a fixed 0.5 hides detections the mAP counts."""
    from torchvision.ops import box_iou
    scored = []  # (score, right) of every detection
    total = 0
    for sample in samples:
        gt, pred = sample.gt_instances, sample.pred_instances
        total += len(gt)
        taken = torch.zeros(len(gt), dtype=torch.bool)
        overlaps = box_iou(pred.bboxes, gt.bboxes) if len(gt) and len(pred) else None
        for i in pred.scores.argsort(descending=True).tolist():
            right = False
            if overlaps is not None:
                ok = (overlaps[i] >= iou) & (gt.labels == pred.labels[i]) & ~taken
                if ok.any():
                    taken[ok.nonzero()[0]] = right = True
            scored.append((float(pred.scores[i]), right))
    best = (1.0, 0.0)
    hits = 0
    for n, (score, right) in enumerate(sorted(scored, reverse=True), 1):
        hits += right
        f1 = 2 * hits / (n + total) if total else 0.0
        if f1 > best[1]:
            best = (score, f1)
    return best


def _draw_instances(img: Image.Image, boxes, labels, masks, scale: int) -> Image.Image:
    canvas = np.asarray(img.resize((img.width * scale, img.height * scale))).copy()
    for mask, label in zip(masks, labels):
        m = np.kron(mask.astype(np.uint8), np.ones((scale, scale), np.uint8)).astype(bool)
        canvas[m] = (0.5 * canvas[m] + 0.5 * np.array(COLOURS[label])).astype(np.uint8)
    out = Image.fromarray(canvas)
    draw = ImageDraw.Draw(out)
    for box, label in zip(boxes, labels):
        # outside the box and darker than the class colour: a square's box is its own edge
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], width=2,
                       outline=tuple(c // 2 for c in COLOURS[label]))
    return out


def _titled(panel: Image.Image, title: str) -> Image.Image:
    out = Image.new('RGB', (panel.width, panel.height + 16), 'white')
    out.paste(panel, (0, 16))
    ImageDraw.Draw(out).text((4, 2), title, fill='black')
    return out


def save_sheet(rows: list[list[Image.Image]], path: Path, gap: int = 8) -> None:
    """Write rows of equally tall panels, ``gap`` pixels apart, as one PNG (atomically)."""
    width = max(sum(p.width for p in panels) + gap * (len(panels) - 1) for panels in rows)
    height = rows[0][0].height
    sheet = Image.new('RGB', (width, len(rows) * (height + gap)), 'white')
    for i, panels in enumerate(rows):
        x = 0
        for panel in panels:
            sheet.paste(panel, (x, i * (height + gap)))
            x += panel.width + gap
    atomic_write(path, lambda tmp: sheet.save(tmp, format='PNG'))


def render(det_samples, seg_samples, path: Path, threshold: float, scale: int = 2) -> None:
    """One row per image: GT instances | predicted instances (score >= ``threshold``) | GT
    mask | predicted mask."""
    rows = []
    for det, seg in zip(det_samples, seg_samples):
        img = Image.open(det.img_path).convert('RGB')
        gt, pred = det.gt_instances, det.pred_instances
        keep = pred.scores >= threshold
        panels = [
            _titled(_draw_instances(img, gt.bboxes.numpy(), gt.labels.tolist(),
                                    gt.masks.to_ndarray(), scale), 'ground truth'),
            _titled(_draw_instances(img, pred.bboxes[keep].numpy(), pred.labels[keep].tolist(),
                                    pred.masks[keep].numpy(), scale),
                    f'Mask R-CNN (score >= {threshold:.2f})'),
        ]
        for title, data in (('ground-truth classes', seg.gt_sem_seg.data),
                            ('UperNet', seg.pred_sem_seg.data)):
            labels = data[0].numpy().clip(0, len(SEG_COLOURS) - 1)
            panels.append(_titled(Image.fromarray(SEG_COLOURS[labels]).resize(
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

    # IoUMetric reports percentages, CocoMetric fractions: print fractions
    metrics = {**det_metrics, **{k: v / 100 for k, v in seg_metrics.items()}}
    print('\n[demo] held-out split, %d images:' % args.num_val)
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'mIoU', 'aAcc'):
        target = f'  (target >= {TARGETS[key]})' if key in TARGETS else ''
        print(f'  {key:18} {float(metrics[key]):8.3f}{target}')
    print(f'[demo] predictions: {picture}')
    print(f'[demo] total time {elapsed / 60:.1f} min on {torch.get_num_threads()} threads')
    learned = all(metrics[k] >= v for k, v in TARGETS.items())
    print('[demo] ' + ('the models learned' if learned else 'BELOW TARGET'))
    return 0 if learned else 1


if __name__ == '__main__':
    sys.exit(main())
