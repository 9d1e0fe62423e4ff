#!/usr/bin/env python
"""Detect or segment large images with an mmdet or mmseg model: whole where memory allows,
in overlapping tiles where it does not.

    python tools/infer_large.py CONFIG CHECKPOINT INPUT... --out DIR [--tile H W]
        [--overlap R] [--max-memory GB] [--batch N] [--score-thr T] [--vis]
        [--device cpu|cuda] [--cfg-options KEY=VALUE ...]

INPUT: image files, folders (searched recursively) or glob patterns; PNG, JPEG, TIFF (an
uncompressed TIFF is read tile by tile from disk). Per image, in DIR: ``STEM.json``, the
detections as COCO results (boxes x, y, w, h; scores; category_id = label + 1; RLE masks) with
the mode, tile count, estimated and measured peak memory; or ``STEM.png``, the class of each
pixel. ``--vis`` adds ``STEM_vis.jpg``, the predictions drawn on the image scaled to 2048 px.

Tiles are at the image's own scale. A detection cut by a tile border is merged with the same
object's detections from the neighbouring tiles (boxes and masks united); segmentation crops'
logits are blended with weights falling off at their borders. See docs/large_images.md.
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout: the demo configs import it)
import argparse
import sys

from mmengine.config import DictAction

from swinv2_backbone.apps.extract import find_images
from swinv2_backbone.apps.large import LargeImageInferencer, write_result
from swinv2_backbone.hosts.runner import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="the model's weights (.pth)")
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='image files, folders or glob patterns')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--tile', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'),
                        help='tile size in pixels of the image (default 512 512)')
    parser.add_argument('--overlap', type=float, default=0.2,
                        help="neighbouring tiles' overlap, a fraction of a tile (default 0.2)")
    parser.add_argument('--max-memory', type=float, default=16.0, metavar='GB',
                        help='GiB a whole-image forward may take: above it, by an estimate '
                        'fitted to two crops, the image is tiled (default 16; 0: always tile)')
    parser.add_argument('--batch', type=int, default=1, help='tiles per forward')
    parser.add_argument('--score-thr', type=float, default=0.05,
                        help='detections scoring below it are dropped (default 0.05)')
    parser.add_argument('--vis', action='store_true', help='also STEM_vis.jpg')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config settings')
    args = parser.parse_args(argv)
    try:
        images = find_images(args.inputs)
        model, host, classes = load_model(args.config, args.checkpoint, args.device,
                                          args.cfg_options)
        infer = LargeImageInferencer(model, host, tuple(args.tile), args.overlap,
                                     args.max_memory, args.batch, args.score_thr,
                                     progress=_progress)
    except (FileNotFoundError, ImportError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    failed = 0
    for i, path in enumerate(images, 1):
        print(f'[{i}/{len(images)}] {path}', flush=True)
        try:
            result = infer(path)
        except (FileNotFoundError, ValueError) as e:
            print(f'error: {e}', file=sys.stderr)
            failed += 1
            continue
        written = write_result(result, args.out, classes, args.vis)
        found = (f'{len(result.detections)} detections' if result.detections is not None
                 else f'{len(set(result.labels.ravel().tolist()))} classes present')
        estimate = (f', whole forward estimated {result.estimate_gib:.2f} GiB'
                    if result.estimate_gib else '')
        print(f'  {result.width}x{result.height} {result.mode} ({result.tiles} tiles'
              f'{estimate}): {found}; peak {result.peak_gib:.2f} GiB, {result.seconds:.1f} s '
              f'-> {", ".join(map(str, written))}', flush=True)
    return 1 if failed else 0


def _progress(done: int, total: int) -> None:
    if total > 1:
        end = '\n' if done == total else ''
        print(f'\r  tiles {done}/{total}', end=end, flush=True)


if __name__ == '__main__':
    sys.exit(main())
