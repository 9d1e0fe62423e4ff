#!/usr/bin/env python
"""Export a whole detector or segmenter with a SwinV2 backbone through mmdeploy.

    python tools/deploy.py DEPLOY_CFG MODEL_CFG CHECKPOINT IMAGE --out end2end.onnx
        [--check IMAGE ...] [--device cpu] [--int8 --calib IMAGES [--calib-count 32]]

DEPLOY_CFG is one of configs/deploy/ (ONNX Runtime, dynamic batch and image size), MODEL_CFG
the mmdet or mmseg config the checkpoint was trained with. IMAGE is the example the graph is
recorded with. ``--check`` runs the file in mmdeploy's ONNX Runtime backend and the checkpoint
in PyTorch on each image given (IMAGE when none) and prints how far they are apart
(``swinv2_backbone.apps.deploy.agreement``). ``--int8`` then writes ``NAME_int8.onnx``:
onnxruntime's static quantization (QDQ) of the whole model, calibrated on ``--calib`` images
through the model config's test pipeline and data preprocessor, as the graph receives them;
``--check`` checks it too. mmdeploy's wheel does not ship its own tools/deploy.py; this is the
part of it these models need, with the rewrites of swinv2_backbone.apps.deploy.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from swinv2_backbone.hosts.exported import add_calibration_args


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
    parser.add_argument('--int8', action='store_true',
                        help='also an int8 copy (onnxruntime QDQ), calibrated on --calib images')
    add_calibration_args(parser)
    args = parser.parse_args(argv)
    if args.int8 and not args.calib:
        parser.error('--int8 needs --calib images')
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
    files = [('', path)]
    if args.int8:
        from swinv2_backbone.apps.extract import find_images
        from swinv2_backbone.apps.quantize import quantize_onnxruntime
        from swinv2_backbone.hosts.exported import calibration_inputs
        target = path.with_name(path.stem + '_int8.onnx')
        try:
            inputs = calibration_inputs(args.model_cfg, find_images(args.calib),
                                        args.calib_count)
            start = time.time()
            quantize_onnxruntime(path, target, inputs)
        except (FileNotFoundError, ValueError) as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
        print(f'wrote {target} (onnxruntime QDQ, {len(inputs)} calibration images, '
              f'{time.time() - start:.1f} s)')
        files.append((' (int8)', target))
    if args.check is not None:
        images = args.check or [args.image]
        for label, file in files:
            pairs = deploy.predict(args.deploy_cfg, args.model_cfg, args.checkpoint, file,
                                   images, device=args.device)
            for image, (ours, ref) in zip(images, pairs):
                found = deploy.agreement(ours, ref)
                print(f'check {image}{label}: ' + ', '.join(
                    f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}'
                    for k, v in found.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
