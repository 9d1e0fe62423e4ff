#!/usr/bin/env python
"""Extract SwinV2 feature pyramids from images (resumable; .npz or .safetensors per image).

    python tools/extract_features.py IMAGES... --out DIR
        [--config CFG | --arch tiny|small|base|large|auto] [--checkpoint PATH]
        [--window W] [--pretrained-windows W1 W2 W3 W4]
        [--stages stem stage1 stage2 stage3 stage4] [--resize keep|short:N|fixed:HxW]
        [--format npz|safetensors] [--fp16] [--batch-size N] [--vis] [--single-file PATH]
        [--device cpu|cuda]

IMAGES are files, folders (searched recursively) or glob patterns. A rerun skips images whose
output exists; unreadable images are reported and skipped. Inputs are normalised with the
ImageNet mean/std the released checkpoints were trained with.
"""
from __future__ import annotations

import argparse
import sys

from swinv2_backbone.extract import (add_backbone_arguments, backbone_from_arguments,
                                     extract_features, find_images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('images', nargs='+')
    parser.add_argument('--out', required=True, help='output directory')
    add_backbone_arguments(parser)
    parser.add_argument('--resize', default='keep')
    parser.add_argument('--format', default='npz', choices=['npz', 'safetensors'])
    parser.add_argument('--fp16', action='store_true', help='store float16')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--vis', action='store_true', help='a PCA picture per image')
    parser.add_argument('--single-file', help='write every image into this one file instead')
    parser.add_argument('--device')
    args = parser.parse_args(argv)
    try:
        images = find_images(args.images)
        model = backbone_from_arguments(args, args.device)
        summary = extract_features(model, images, args.out, args.format, args.resize,
                                   args.fp16, args.batch_size, args.vis, args.single_file)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(summary.table())
    return 1 if summary.failed and not summary.done else 0


if __name__ == '__main__':
    sys.exit(main())
