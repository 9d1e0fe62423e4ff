"""What the demos (tools/demo.py, tools/demo_dino.py) share: training a config on the
synthetic shapes through its host's runner, the held-out predictions, the score threshold with
the best F1, and the picture sheets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook
from PIL import Image, ImageDraw

from swinv2_backbone.files import atomic_write
from swinv2_backbone.hosts.runner import build_runner
from .synthetic import shapes_cfg_options

COLOURS = [(230, 80, 60), (60, 190, 90), (70, 110, 240)]


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
    from mmdet.structures.bbox import bbox_overlaps
    scored = []  # (score, right) of every detection
    total = 0
    for sample in samples:
        gt, pred = sample.gt_instances, sample.pred_instances
        total += len(gt)
        taken = torch.zeros(len(gt), dtype=torch.bool)
        overlaps = bbox_overlaps(pred.bboxes, gt.bboxes) if len(gt) and len(pred) else None
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


def draw_instances(img: Image.Image, boxes, labels, masks, scale: int) -> Image.Image:
    """``img`` enlarged ``scale`` times with each instance's mask (H, W) hatched in white and
    outlined in its class colour darkened, and its box (x0, y0, x1, y1) drawn around it: the
    shapes are painted in their class colours, so a tint of that colour would not show."""
    canvas = np.asarray(img.resize((img.width * scale, img.height * scale))).copy()
    rows, cols = np.indices(canvas.shape[:2])
    hatch = (rows + cols) // 3 % 2 == 0  # diagonal stripes 3 px wide
    for mask, label in zip(masks, labels):
        m = np.kron(mask.astype(np.uint8), np.ones((scale, scale), np.uint8)).astype(bool)
        inner = m.copy()  # the mask less its 1-pixel rim (4-neighbour erosion)
        inner[1:] &= m[:-1]
        inner[:-1] &= m[1:]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        stripes = inner & hatch
        canvas[stripes] = (0.4 * canvas[stripes] + 0.6 * 255).astype(np.uint8)
        canvas[m & ~inner] = tuple(c // 2 for c in COLOURS[label])
    out = Image.fromarray(canvas)
    draw = ImageDraw.Draw(out)
    for box, label in zip(boxes, labels):
        # outside the box and darker than the class colour: a square's box is its own edge
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        draw.rectangle([x0 - 2, y0 - 2, x1 + 2, y1 + 2], width=2,
                       outline=tuple(c // 2 for c in COLOURS[label]))
    return out


def titled(panel: Image.Image, title: str) -> Image.Image:
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
