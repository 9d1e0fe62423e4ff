#!/usr/bin/env python
"""Export a SwinV2 backbone to one ONNX file that takes any batch and image size.

    python tools/export.py --out swinv2.onnx
        [--config CFG | --arch tiny|small|base|large|auto] [--checkpoint PATH]
        [--window W] [--pretrained-windows W1 W2 W3 W4]
        [--stages stem stage1 stage2 stage3 stage4]
        [--exporter dynamo|torchscript] [--opset N] [--half] [--static H W] [--check]
    python tools/export.py --out features.onnx --config CFG --neck [--checkpoint PATH] [--check]
    python tools/export.py --out swinv2.onnx --config CFG [--neck] [--checkpoint PATH] --int8
        --calib IMAGES [--calib-count 32] [--int8-backend openvino|onnxruntime]
        [--no-smooth-quant]

The model is built as tools/extract_features.py builds it (a config's backbone, a preset, or
the architecture read from a checkpoint). ``--check`` runs the file once in onnxruntime (CPU)
against PyTorch at a few sizes and prints the error, max |onnx - torch| over each stage's std.
``--neck`` exports the config's backbone with its neck (or a Mask2Former head's pixel decoder)
instead, the whole model's weights from ``--checkpoint`` (a training checkpoint), with the
TorchScript exporter (``swinv2_backbone.apps.export.export_backbone_neck``).
``--int8`` then writes an int8 copy beside it (``NAME_int8.xml`` by NNCF on OpenVINO, or
``NAME_int8.onnx`` by onnxruntime's QDQ static quantization), calibrated on ``--calib`` images
through the config's test pipeline and data preprocessor, and prints each output's error
against the float32 file on those inputs (``swinv2_backbone.apps.quantize``).
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
from swinv2_backbone.hosts.exported import add_calibration_args

# an int8 output this far (rms over the float32 output's std) from float32 is reported
INT8_RMS_WARNING = 0.25
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
    parser.add_argument('--int8', action='store_true',
                        help='also an int8 copy, calibrated on --calib images (needs --config)')
    add_calibration_args(parser)
    parser.add_argument('--int8-backend', choices=['openvino', 'onnxruntime'], default='openvino',
                        help="'openvino' (NNCF, an .xml) or 'onnxruntime' (QDQ, an .onnx)")
    parser.add_argument('--smooth-quant', action=argparse.BooleanOptionalAction, default=True,
                        help="NNCF's SmoothQuant (openvino backend; default on)")
    args = parser.parse_args(argv)
    if args.int8 and not (args.config and args.calib):
        parser.error('--int8 needs --config (its test pipeline) and --calib images')
    if args.neck:
        if not args.config:
            parser.error('--neck exports a model built from --config')
        code = _export_neck(args)
        return _int8(args) if code == 0 and args.int8 else code
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
    return _int8(args) if args.int8 else 0


def _int8(args) -> int:
    from pathlib import Path

    from swinv2_backbone.apps.extract import find_images
    from swinv2_backbone.apps.quantize import file_errors, open_runtime, output_names, quantize
    from swinv2_backbone.hosts.exported import calibration_inputs
    out = Path(args.out)
    target = out.with_name(out.stem + ('_int8.xml' if args.int8_backend == 'openvino'
                                       else '_int8.onnx'))
    try:
        inputs = calibration_inputs(args.config, find_images(args.calib), args.calib_count)
        start = time.time()
        quantize(out, target, inputs, args.int8_backend, args.smooth_quant)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {target} ({args.int8_backend}, {len(inputs)} calibration images, '
          f'{time.time() - start:.1f} s)')
    reference = open_runtime(out, args.int8_backend, 'f32', torch.get_num_threads())
    errors = file_errors(reference, open_runtime(target, args.int8_backend, 'f32',
                                                 torch.get_num_threads()), inputs)
    names = output_names(read_metadata(out))
    print('int8 against float32 on the calibration inputs, |int8 - f32| / std: ' + ', '.join(
        f'{n} max {e["max"]:.2f} rms {e["rms"]:.3f}' for n, e in zip(names, errors)))
    far = [n for n, e in zip(names, errors) if e['rms'] > INT8_RMS_WARNING]
    if far:
        print(f'warning: {", ".join(far)} deviate from float32 by more than '
              f'{INT8_RMS_WARNING} std (rms): check the task metric before using this file, '
              'or quantize with the other --int8-backend', file=sys.stderr)
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
