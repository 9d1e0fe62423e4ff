#!/usr/bin/env python
"""Large images on a CPU: train a small-object SwinV2 Mask R-CNN on crops, then detect on large
images whole, sliced, and with SAHI, scored alike.

1. write 256x256 training crops full of 20-48 px shapes, and large images of the same kind
   (four 2048x2048, one 4096x4096) with their COCO annotations (devkit/synthetic.py);
2. train ``configs/demo/mask-rcnn_swinv2-nano_large-shapes.py`` on the crops (skipped when
   ``--checkpoint`` is given);
3. on the 2048x2048 images: our whole-image and sliced inference (tools/infer_large.py's
   ``LargeImageInferencer``) and SAHI's mmdet wrapper with and without its whole-image pass, on
   the same checkpoint and tiles; COCO bbox/segm mAP, duplicates at tile borders, time and
   peak memory per image (devkit/large_eval.py);
4. the 4096x4096 image with ``--max-memory 16``: whole or sliced, as the estimate decides;
   ``OUT/large_vis.jpg`` shows the sliced predictions on a 2048x2048 image, with the tiles'
   borders dotted, and ``OUT/large_vis_detail.jpg`` an 800x600 part of it.

    python tools/demo_large.py [--out demo_out/large] [--iters 800] [--checkpoint PTH]
                               [--tile 512 512] [--overlap 0.2] [--no-sahi]
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout)
import argparse
import sys
import time
from pathlib import Path

from devkit.demo import train_and_evaluate, train_options
from devkit.large_eval import DUPLICATE_SCORE, coco_scores, duplicates, load_gt, run_ours, \
    run_sahi
from devkit.synthetic import make_large_shapes_set, make_shapes_dataset
from swinv2_backbone.apps.large import LargeImage, LargeImageInferencer, draw
from swinv2_backbone.hosts.runner import load_model

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / 'configs' / 'demo' / 'mask-rcnn_swinv2-nano_large-shapes.py'
SHAPES = dict(radius=(10, 24), grid=64)
# a whole 2048x2048 image holds about 600 shapes: caps above it, for the whole-image forward
WHOLE_CAPS = {'model.test_cfg.rpn.nms_pre': 4000, 'model.test_cfg.rpn.max_per_img': 4000,
              'model.test_cfg.rcnn.max_per_img': 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='demo_out/large', help='output directory')
    parser.add_argument('--iters', type=int, default=800, help='training iterations')
    parser.add_argument('--checkpoint', help='skip training: evaluate this checkpoint')
    parser.add_argument('--tile', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'),
                        help='tile size of the sliced methods, ours and SAHI (default 512 512)')
    parser.add_argument('--overlap', type=float, default=0.2,
                        help="tiles' overlap, a fraction of a tile (default 0.2)")
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help="every method's score threshold (default 0.3, SAHI's: lower, its "
                        'mmdet wrapper fails on the tiny masks of low-scoring detections)')
    parser.add_argument('--no-sahi', action='store_true', help='leave SAHI out')
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    start = time.perf_counter()

    print(f'[large] writing training crops and large images to {out}')
    make_shapes_dataset(out / 'data', 400, 20, size=256, max_objects=0, seed=2, **SHAPES)
    eval_root = make_large_shapes_set(out / 'eval', (2048, 2048, 2048, 2048, 4096), **SHAPES)
    gt_all = load_gt(eval_root / 'instances.json')
    gt = dict(gt_all, images=gt_all['images'][:4],
              annotations=[a for a in gt_all['annotations'] if a['image_id'] < 4])
    gt_file = out / 'eval' / 'instances_2048.json'
    gt_file.write_text(__import__('json').dumps(gt))

    checkpoint = args.checkpoint
    if checkpoint is None:
        print(f'[large] training the small-object Mask R-CNN for {args.iters} iterations')
        train_and_evaluate(CONFIG, out / 'det', train_options(out / 'data', 'mmdet', args.iters))
        checkpoint = str(out / 'det' / f'iter_{args.iters}.pth')

    tile, images = tuple(args.tile), eval_root / 'images'
    rows = []
    model, host, classes = load_model(CONFIG, checkpoint)
    sliced = LargeImageInferencer(model, host, tile, args.overlap, max_memory=0,
                                  score_thr=args.score_thr)
    print('[large] ours, sliced')
    rows.append(('ours, sliced', *run_ours(sliced, gt, images)))
    result = sliced(images / gt['images'][0]['file_name'])
    picture = draw(result, LargeImage(result.path))
    picture.save(out / 'large_vis.jpg', quality=90)
    picture.crop((200, 200, 1000, 800)).save(out / 'large_vis_detail.jpg', quality=90)
    whole_model, _, _ = load_model(CONFIG, checkpoint, cfg_options=WHOLE_CAPS)
    print('[large] ours, whole image')
    rows.append(('ours, whole image', *run_ours(
        LargeImageInferencer(whole_model, host, tile, args.overlap, max_memory=None,
                             score_thr=args.score_thr), gt, images)))
    if not args.no_sahi:
        for standard in (False, True):
            name = 'SAHI' + (' + its whole-image pass (default)' if standard else '')
            print(f'[large] {name}')
            rows.append((name, *run_sahi(str(CONFIG), checkpoint, gt, images, tile,
                                         args.overlap, args.score_thr, standard)))

    print(f'\n[large] {len(gt["images"])} images of 2048x2048, '
          f'{len(gt["annotations"])} objects; tiles {tile[0]}x{tile[1]}, overlap '
          f'{args.overlap}')
    print(f'| method | bbox mAP | segm mAP | bbox mAP@50 | duplicates (score >= '
          f'{DUPLICATE_SCORE}) | s / image | peak GiB |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, results, stats in rows:
        s = coco_scores(gt_file, results)
        seconds = sum(t for t, *_ in stats) / len(stats)
        peak = max(p for _, p, *_ in stats)
        print(f'| {name} | {s["bbox_mAP"]:.3f} | {s.get("segm_mAP", float("nan")):.3f} | '
              f'{s["bbox_mAP_50"]:.3f} | {duplicates(gt, results)} | {seconds:.1f} | '
              f'{peak:.2f} |', flush=True)

    big = gt_all['images'][4]
    auto = LargeImageInferencer(model, host, tile, args.overlap, max_memory=16,
                                score_thr=args.score_thr)
    r = auto(images / big['file_name'])
    print(f'\n[large] {big["width"]}x{big["height"]} with --max-memory 16: whole forward '
          f'estimated {r.estimate_gib:.2f} GiB -> {r.mode}, {len(r.detections)} detections, '
          f'peak {r.peak_gib:.2f} GiB, {r.seconds:.1f} s')
    print(f"[large] picture: {out / 'large_vis.jpg'}; total "
          f"{(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == '__main__':
    sys.exit(main())
