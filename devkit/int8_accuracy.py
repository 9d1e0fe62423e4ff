#!/usr/bin/env python
"""int8 on a trained demo model: every way of running its backbone (+ neck) evaluated by
``tools/test.py`` on the held-out split, and each int8 file's per-output error there.

    python devkit/int8_accuracy.py det|seg|dino [--out demo_out] [--calib-count 32]

Needs the demo's checkpoint and data first: ``make demo`` (det: Mask R-CNN, seg: UperNet) or
``make demo-dino`` (dino). Writes the files, the configs running them (``SwinV2Exported``, heads
in PyTorch) and ``results.json`` to ``OUT/int8/MODEL``, and prints a markdown table.

The evaluated file holds the neck where the config has one (``export_backbone_neck``); then
the backbone alone (the stages the config outputs) is quantized as well, for the per-stage
error. Also printed: the matrix products each quantizer left in float.
"""
from __future__ import annotations

import argparse
import ast
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from devkit.synthetic import shapes_cfg_options  # noqa: E402

# model -> (config, work folder, data folder, host, metrics reported)
MODELS = {
    'det': ('mask-rcnn_swinv2-nano_shapes.py', 'det', 'data', 'mmdet',
            ('coco/bbox_mAP', 'coco/segm_mAP')),
    'seg': ('upernet_swinv2-nano_shapes.py', 'seg', 'data', 'mmseg', ('mIoU',)),
    'dino': ('dino_swinv2-nano_shapes.py', 'dino', 'data_dino', 'mmdet', ('coco/bbox_mAP',)),
}
# row -> (file, runtime, OpenVINO precision hint); file None: the config as trained
ROWS = {
    'PyTorch, float32': (None, None, None),
    'OpenVINO, float32 file': ('f32.onnx', 'openvino', 'f32'),
    'OpenVINO, bf16 hint': ('f32.onnx', 'openvino', 'bf16'),
    'OpenVINO, int8 (NNCF, SmoothQuant)': ('int8_sq.xml', 'openvino', 'f32'),
    'OpenVINO, int8 (NNCF, no SmoothQuant)': ('int8.xml', 'openvino', 'f32'),
    'onnxruntime, int8 (QDQ)': ('int8.onnx', 'onnxruntime', 'f32'),
}
SPLITS = {'mmdet': ('coco/train', 'coco/val'),
          'mmseg': ('ade/images/training', 'ade/images/validation')}


def checkpoint_of(work: Path) -> Path:
    """The checkpoint a finished demo training left (``last_checkpoint``)."""
    last = work / 'last_checkpoint'
    if not last.is_file():
        raise FileNotFoundError(f'{last} not found: run the demo first (make demo / demo-dino)')
    return Path(last.read_text().strip())


def write_files(config: Path, checkpoint: Path, folder: Path, calib: list, neck: bool) -> None:
    """The float32 file (backbone + neck when ``neck``, else the backbone) and its three int8
    copies; with a neck, the same for the backbone alone (``stages_*``: the config's stages)
    for the per-stage error."""
    from mmengine.runner import load_checkpoint

    from swinv2_backbone.apps.export import export_backbone_neck, export_onnx
    from swinv2_backbone.apps.quantize import quantize_onnxruntime, quantize_openvino
    from swinv2_backbone.hosts.runner import build_model, load_config

    model = build_model(load_config(config))
    load_checkpoint(model, str(checkpoint), map_location='cpu')
    model.eval()
    if neck:
        export_backbone_neck(model, folder / 'f32.onnx')
    export_onnx(model.backbone, folder / f'{"stages_" if neck else ""}f32.onnx')
    for prefix in ('', 'stages_') if neck else ('',):
        source = folder / f'{prefix}f32.onnx'
        quantize_openvino(source, folder / f'{prefix}int8_sq.xml', calib, smooth_quant=True)
        quantize_openvino(source, folder / f'{prefix}int8.xml', calib, smooth_quant=False)
        quantize_onnxruntime(source, folder / f'{prefix}int8.onnx', calib)


def evaluate(base: Path, checkpoint: Path, folder: Path, row: tuple, neck: bool,
             options: dict) -> dict:
    """``tools/test.py`` on the config (``file`` None) or on a config running ``file``."""
    file, runtime, hint = row
    config = base
    if file:
        config = folder / f'{Path(file).stem}_{runtime}_{hint}.py'
        config.write_text(
            f"_base_ = [{str(base)!r}]\n"
            f"model = dict(backbone=dict(_delete_=True, type='SwinV2Exported', "
            f"file={str(folder / file)!r}, runtime={runtime!r}, hint={hint!r})"
            f"{', neck=None' if neck else ''})\n")
    cmd = [sys.executable, str(ROOT / 'tools' / 'test.py'), str(config), str(checkpoint),
           '--work-dir', str(folder / 'work'), '--cfg-options',
           *(f'{k}={v}' for k, v in options.items())]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{done.stderr[-3000:]}')
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def errors(folder: Path, inputs: list, prefix: str) -> dict:
    """Per int8 file: each output's max and rms |int8 - f32| / std on ``inputs``."""
    from swinv2_backbone.apps.quantize import (file_errors, open_runtime, output_names,
                                               read_file_metadata)
    threads = torch.get_num_threads()
    names = output_names(read_file_metadata(folder / f'{prefix}f32.onnx'))
    out, references = {}, {}  # the float32 file, compiled once per runtime
    for name, (file, runtime, _) in ROWS.items():
        if file is None or 'int8' not in file:
            continue
        if runtime not in references:
            references[runtime] = open_runtime(folder / f'{prefix}f32.onnx', runtime, 'f32',
                                               threads)
        other = open_runtime(folder / f'{prefix}{file}', runtime, 'f32', threads)
        out[name] = dict(zip(names, file_errors(references[runtime], other, inputs)))
    return out


def float_products(path: Path) -> tuple[int, dict[str, int]]:
    """Matrix products and convolutions of an int8 file, and those with an input left in
    float (by name, stage and block numbers as N): what the quantizer kept in float."""
    products, kept = 0, collections.Counter()
    if path.suffix == '.onnx':  # QDQ: an int8 input comes from a DequantizeLinear
        import onnx
        graph = onnx.load(str(path), load_external_data=False).graph
        producer = {o: node.op_type for node in graph.node for o in node.output}
        for node in graph.node:
            if node.op_type in ('MatMul', 'Gemm', 'Conv'):
                products += 1
                if not all(producer.get(i) == 'DequantizeLinear' for i in node.input[:2]):
                    kept[re.sub(r'\.\d+', '.N', node.name)] += 1
        return products, dict(kept)
    import openvino as ov

    def int8(node) -> bool:  # a FakeQuantize or an int8 constant, through data movement
        while node.get_type_name() in ('Convert', 'Subtract', 'Multiply', 'Reshape',
                                       'Transpose', 'Pad'):
            source = node.input_value(0).get_node()
            if node.get_type_name() == 'Convert' and source.get_type_name() == 'Constant':
                return source.get_element_type().get_type_name() in ('i8', 'u8')
            node = source
        return node.get_type_name() == 'FakeQuantize'

    for op in ov.Core().read_model(str(path)).get_ordered_ops():
        if op.get_type_name() in ('MatMul', 'Convolution'):
            products += 1
            if not all(int8(op.input_value(i).get_node()) for i in range(2)):
                kept[re.sub(r'\.\d+', '.N', op.get_friendly_name())] += 1
    return products, dict(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', choices=sorted(MODELS))
    parser.add_argument('--out', default='demo_out', help="the demo's output folder")
    parser.add_argument('--calib-count', type=int, default=32)
    parser.add_argument('--error-count', type=int, default=8,
                        help='held-out images the per-output error is measured on')
    args = parser.parse_args(argv)
    from swinv2_backbone.apps.extract import find_images
    from swinv2_backbone.hosts.exported import calibration_inputs
    from swinv2_backbone.hosts.runner import load_config

    name, work, data, host, keys = MODELS[args.model]
    out = Path(args.out).resolve()
    config = ROOT / 'configs' / 'demo' / name
    checkpoint = checkpoint_of(out / work)
    folder = out / 'int8' / args.model
    folder.mkdir(parents=True, exist_ok=True)
    options = shapes_cfg_options(out / data, host)
    cfg = load_config(config)
    neck = cfg.model.get('neck') is not None
    train, val = (sorted(find_images([str(out / data / s)])) for s in SPLITS[host])
    calib = calibration_inputs(cfg, train, args.calib_count)
    held_out = calibration_inputs(cfg, val, args.error_count)
    write_files(config, checkpoint, folder, calib, neck)

    results = dict(model=args.model, config=str(config), checkpoint=str(checkpoint),
                   metrics={}, errors=errors(folder, held_out, ''),
                   stage_errors=errors(folder, held_out, 'stages_' if neck else ''),
                   float_products={row: float_products(folder / spec[0])
                                   for row, spec in ROWS.items() if spec[0] and 'int8' in spec[0]})
    for row, spec in ROWS.items():
        metrics = evaluate(config, checkpoint, folder, spec, neck, options)
        results['metrics'][row] = {k: metrics[k] for k in keys}
        print(f'{row}: ' + ', '.join(f'{k} {metrics[k]}' for k in keys), flush=True)
    (folder / 'results.json').write_text(json.dumps(results, indent=1))

    print(f'\n| what runs the backbone{" + neck" if neck else ""} | ' + ' | '.join(keys) + ' |')
    print('|---|' + '---:|' * len(keys))
    for row, metrics in results['metrics'].items():
        print(f'| {row} | ' + ' | '.join(f'{metrics[k]}' for k in keys) + ' |')
    for title, table in (('outputs', results['errors']), ('stages', results['stage_errors'])):
        print(f'\nrms |int8 - f32| / std on {args.error_count} held-out images, {title}:')
        for row, per in table.items():
            print(f'  {row}: ' + ', '.join(f'{n} {e["rms"]:.3f}' for n, e in per.items()))
    for row, (total, kept) in results['float_products'].items():
        print(f'\n{row}: {total - sum(kept.values())} of {total} matrix products and '
              f'convolutions in int8; in float: ' + (', '.join(
                  f'{name} x{n}' for name, n in kept.items()) or 'none'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
