#!/usr/bin/env python
"""Export a whole detector or segmenter with a SwinV2 backbone through mmdeploy.

    python tools/deploy.py DEPLOY_CFG MODEL_CFG CHECKPOINT IMAGE --out end2end.onnx
        [--check IMAGE ...] [--device cpu]

DEPLOY_CFG is one of configs/deploy/ (ONNX Runtime, dynamic batch and image size), MODEL_CFG
the mmdet or mmseg config the checkpoint was trained with. IMAGE is the example the graph is
recorded with. ``--check`` runs the file in mmdeploy's ONNX Runtime backend and the checkpoint
in PyTorch on each image given (IMAGE when none) and prints how far they are apart
(``swinv2_backbone.apps.deploy.agreement``). mmdeploy's wheel does not ship its own tools/deploy.py;
this is the part of it these models need, with the rewrites of swinv2_backbone.apps.deploy.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('deploy_cfg', help='an mmdeploy config, e.g. from configs/deploy/')
    parser.add_argument('model_cfg', help='the mmdet / mmseg config of the checkpoint')
    parser.add_argument('checkpoint', help="the model's trained weights")
    parser.add_argument('image', help='the example image the graph is recorded with')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--check', nargs='*', metavar='IMAGE',
                        help='compare the backend with PyTorch on these images (default: IMAGE)')
    parser.add_argument('--device', default='cpu', help='where PyTorch runs (default: cpu)')
    args = parser.parse_args(argv)
    inputs = [('deploy config', args.deploy_cfg), ('model config', args.model_cfg),
              ('checkpoint', args.checkpoint), ('image', args.image),
              *(('check image', image) for image in args.check or ())]
    for what, path in inputs:
        if not Path(path).is_file():
            print(f'error: {what} {path!r} does not exist', file=sys.stderr)
            return 2
    try:
        from swinv2_backbone.apps import deploy
    except ImportError as e:
        print(f'error: mmdeploy is needed ({e}): pip install --no-deps "mmdeploy==1.3.1" aenum '
              '(without its dependencies: it pins protobuf <= 3.20.2, which onnx refuses, yet '
              "runs with onnx's; pip's warning about that pin is expected; docs/deploy.md)",
              file=sys.stderr)
        return 2
    start = time.time()
    try:
        path = deploy.export_model(args.deploy_cfg, args.model_cfg, args.checkpoint, args.image,
                                   args.out, device=args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {path} ({time.time() - start:.1f} s)')
    if args.check is not None:
        images = args.check or [args.image]
        pairs = deploy.predict(args.deploy_cfg, args.model_cfg, args.checkpoint, path, images,
                               device=args.device)
        for image, (ours, ref) in zip(images, pairs):
            found = deploy.agreement(ours, ref)
            print(f'check {image}: ' + ', '.join(
                f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}' for k, v in found.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
