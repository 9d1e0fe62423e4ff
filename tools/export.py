#!/usr/bin/env python
"""Export a SwinV2 backbone to one ONNX file that takes any batch and image size.

    python tools/export.py --out swinv2.onnx
        [--config CFG | --arch tiny|small|base|large|auto] [--checkpoint PATH]
        [--window W] [--pretrained-windows W1 W2 W3 W4]
        [--stages stem stage1 stage2 stage3 stage4]
        [--exporter dynamo|torchscript] [--opset N] [--half] [--static H W] [--check]
    python tools/export.py --out features.onnx --config CFG --neck [--checkpoint PATH] [--check]

The model is built as tools/extract_features.py builds it (a config's backbone, a preset, or
the architecture read from a checkpoint). ``--check`` runs the file once in onnxruntime (CPU)
against PyTorch at a few sizes and prints the error, max |onnx - torch| over each stage's std.
``--neck`` exports the config's backbone with its neck (or a Mask2Former head's pixel decoder)
instead, the whole model's weights from ``--checkpoint`` (a training checkpoint), with the
TorchScript exporter (``swinv2_backbone.apps.export.export_backbone_neck``).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from swinv2_backbone.apps.export import (DEFAULT_EXPORTER, EXPORTERS, BackboneNeck,
                                         check_onnx, export_backbone_neck, export_onnx,
                                         read_metadata)
from swinv2_backbone.apps.extract import add_backbone_arguments, backbone_from_arguments

# what --check runs: the example's size, odd sizes, a map smaller than a window, a batch of 3
CHECK_SIZES = [(2, 64, 96), (1, 97, 131), (1, 24, 40), (3, 224, 160)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    add_backbone_arguments(parser)
    parser.add_argument('--exporter', choices=EXPORTERS, default=DEFAULT_EXPORTER,
                        help=f"default {DEFAULT_EXPORTER!r} (seconds); 'dynamo' (torch.export, "
                             'torch >= 2.6) gives an equally exact file in minutes')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument('--half', action='store_true', help='float16 weights, input, outputs')
    parser.add_argument('--static', type=int, nargs=2, metavar=('H', 'W'),
                        help='fix batch 1 and this size instead of dynamic axes')
    parser.add_argument('--check', action='store_true',
                        help='run the file in onnxruntime against PyTorch and print the error')
    parser.add_argument('--neck', action='store_true',
                        help="the config's backbone and neck (or pixel decoder) in one file")
    args = parser.parse_args(argv)
    if args.neck:
        if not args.config:
            parser.error('--neck exports a model built from --config')
        return _export_neck(args)
    try:
        model = backbone_from_arguments(args, device='cpu')
        example = None
        if args.static:
            example = torch.randn(1, model.in_channels, *args.static)
        start = time.time()
        path = export_onnx(model, args.out, dynamic=not args.static, opset=args.opset,
                           half=args.half, exporter=args.exporter, example=example)
    except (FileNotFoundError, ValueError, TypeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    outputs = zip(model.out_features, model.out_channels, model.out_strides)
    print(f'wrote {path} ({args.exporter} exporter, {time.time() - start:.1f} s): outputs '
          + ', '.join(f'{n} ({c} ch, stride {s})' for n, c, s in outputs))
    if args.check:
        sizes = [(1, *args.static)] if args.static else CHECK_SIZES
        for row in check_onnx(model, path, sizes):
            errs = ', '.join(f'{n} {e:.1e}' for n, e in row['rel_err'].items())
            print(f'check {"x".join(map(str, row["size"]))}: max |onnx - torch| / std: {errs}')
    return 0


def _export_neck(args) -> int:
    from mmengine.runner import load_checkpoint

    from swinv2_backbone.hosts.runner import build_model, load_config
    try:
        # the checkpoint below has the whole model's weights
        model = build_model(load_config(args.config))
        if args.checkpoint:
            load_checkpoint(model, args.checkpoint, map_location='cpu')
        else:
            print('no --checkpoint: random weights')
        example = torch.randn(1, 3, *args.static) if args.static else None
        start = time.time()
        path = export_backbone_neck(model, args.out, dynamic=not args.static,
                                    **({'opset': args.opset} if args.opset else {}),
                                    example=example)
    except (FileNotFoundError, ValueError, TypeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    wrapper = BackboneNeck(model)
    wrapper.out_features = names = read_metadata(path)['outputs']
    print(f'wrote {path} (torchscript exporter, {time.time() - start:.1f} s): outputs '
          + ', '.join(names))
    if args.check:
        sizes = [(1, *args.static)] if args.static else CHECK_SIZES
        for row in check_onnx(wrapper.eval(), path, sizes):
            errs = ', '.join(f'{n} {e:.1e}' for n, e in row['rel_err'].items())
            print(f'check {"x".join(map(str, row["size"]))}: max |onnx - torch| / std: {errs}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
