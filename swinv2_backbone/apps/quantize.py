"""Post-training int8 of an exported file, calibrated on model inputs (``hosts.exported.
calibration_inputs`` makes them from images as the model's config sees them).

- ``quantize_openvino``: NNCF on OpenVINO, the transformer preset; writes an OpenVINO IR
  (``.xml`` + ``.bin``).
- ``quantize_onnxruntime``: onnxruntime's static quantization, QDQ format, int8 weights per
  channel; writes an ``.onnx``.

Both keep the file's metadata (architecture, windows, outputs) so that a model config can check
the file it runs (``hosts.exported``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import numpy as np

__all__ = ['file_errors', 'open_runtime', 'output_names', 'quantize', 'quantize_onnxruntime',
           'quantize_openvino', 'read_file_metadata']

RT_KEY = 'swinv2_backbone'  # the OpenVINO rt_info section the metadata is written under


def read_file_metadata(path: str | os.PathLike) -> dict:
    """The export metadata of an ``.onnx`` file or an OpenVINO ``.xml`` this module wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'exported file not found: {path}')
    if path.suffix == '.onnx':
        from .export import read_metadata
        return read_metadata(path)
    if path.suffix == '.xml':
        import openvino as ov
        model = ov.Core().read_model(str(path))
        if not model.has_rt_info([RT_KEY]):
            return {}
        section = model.get_rt_info([RT_KEY]).astype(dict)
        return {k: json.loads(v.astype(str)) for k, v in section.items()}
    raise ValueError(f'{path}: expected an .onnx file or an OpenVINO .xml')


def output_names(metadata: dict) -> list[str] | None:
    """The output names of a file with this export metadata: a backbone + neck file's are the
    neck's (``outputs``; its ``out_features`` are the backbone's), a backbone file's its
    ``out_features``."""
    return metadata.get('outputs') or metadata.get('out_features')


def _write_atomically_ov(model, out: Path) -> None:
    """Save the IR under temporary names, then rename the .bin, then the .xml."""
    import openvino as ov
    tmp = out.with_name(f'.{out.stem}.part.xml')
    try:
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix('.bin'), out.with_suffix('.bin'))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_suffix('.bin').unlink(missing_ok=True)


def quantize_openvino(onnx_file: str | os.PathLike, out: str | os.PathLike,
                      calibration: list[np.ndarray], smooth_quant: bool = True) -> Path:
    """int8 OpenVINO IR of ``onnx_file`` by NNCF's post-training quantization (transformer
    preset; ``smooth_quant=False`` turns its SmoothQuant off), calibrated on ``calibration``.
    Writes ``out`` (.xml) and its .bin; returns ``out``."""
    import nncf
    import openvino as ov
    out = Path(out)
    if out.suffix != '.xml':
        raise ValueError(f'an OpenVINO IR is written as .xml, got {out}')
    metadata = read_file_metadata(onnx_file)
    model = ov.Core().read_model(str(onnx_file))
    options = {} if smooth_quant else dict(
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1)))
    quantized = nncf.quantize(model, nncf.Dataset(calibration),
                              model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration), **options)
    for key, value in {**metadata, 'int8': f'nncf {nncf.__version__}, openvino'}.items():
        quantized.set_rt_info(json.dumps(value), [RT_KEY, key])
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically_ov(quantized, out)
    return out


def quantize_onnxruntime(onnx_file: str | os.PathLike, out: str | os.PathLike,
                         calibration: list[np.ndarray]) -> Path:
    """int8 ONNX (QDQ: int8 weights per channel, uint8 activations) of ``onnx_file`` (ours,
    or a whole model mmdeploy exported) by onnxruntime's static quantization of its MatMul,
    Gemm and Conv ops, calibrated on ``calibration`` (min-max). Returns ``out``."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    from ..files import atomic_write
    from .export import _add_metadata

    graph = onnx.load(str(onnx_file), load_external_data=False)
    input_name = graph.graph.input[0].name  # ours is 'image'; mmdeploy's whole models 'input'
    opset = max(o.version for o in graph.opset_import if o.domain in ('', 'ai.onnx'))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self):
            x = next(self.items, None)
            return None if x is None else {input_name: x}

    out = Path(out)
    metadata = read_file_metadata(onnx_file)

    def write(tmp: str) -> None:
        source = str(onnx_file)
        if opset < 13:  # per-channel QDQ needs opset 13; mmdeploy exports opset 11
            from onnx.version_converter import convert_version
            source = f'{tmp}.opset13.onnx'
            onnx.save(convert_version(onnx.load(str(onnx_file)), 13), source)
        try:
            quantize_static(source, tmp, Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QUInt8,
                            op_types_to_quantize=['MatMul', 'Gemm', 'Conv'])
        finally:
            if source != str(onnx_file):
                os.unlink(source)
        _add_metadata(Path(tmp), {**metadata,
                                  'int8': f'onnxruntime {onnxruntime.__version__}, QDQ'})

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, write)
    return out


def quantize(onnx_file: str | os.PathLike, out: str | os.PathLike,
             calibration: list[np.ndarray], backend: str = 'openvino',
             smooth_quant: bool = True) -> Path:
    """:func:`quantize_openvino` (``smooth_quant`` its SmoothQuant) or
    :func:`quantize_onnxruntime`, by ``backend``."""
    if backend == 'openvino':
        return quantize_openvino(onnx_file, out, calibration, smooth_quant)
    if backend == 'onnxruntime':
        return quantize_onnxruntime(onnx_file, out, calibration)
    raise ValueError(f"backend must be 'openvino' or 'onnxruntime', got {backend!r}")


def open_runtime(file: str | os.PathLike, runtime: str = 'openvino', hint: str = 'f32',
                 threads: int = 1):
    """A function running ``file`` on the CPU: (B, 3, H, W) float32 array -> its outputs (a
    list of arrays). ``runtime`` 'openvino' (``hint`` its precision, 'f32' or 'bf16') or
    'onnxruntime' (.onnx only)."""
    if runtime == 'onnxruntime':
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        session = ort.InferenceSession(str(file), options, providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        return lambda a: session.run(None, {name: a})
    if runtime != 'openvino':
        raise ValueError(f"runtime must be 'openvino' or 'onnxruntime', got {runtime!r}")
    import openvino as ov
    compiled = ov.Core().compile_model(str(file), 'CPU', {
        'INFERENCE_PRECISION_HINT': hint, 'INFERENCE_NUM_THREADS': threads})
    request = compiled.create_infer_request()

    def run(a: np.ndarray) -> list[np.ndarray]:
        results = request.infer({0: a})  # one inference for all outputs
        return [results[o] for o in compiled.outputs]
    return run


def file_errors(reference, other, inputs: list[np.ndarray]) -> list[dict]:
    """Per output, over ``inputs``: max and RMS of |other - reference| over the reference's
    std, both run by :func:`open_runtime`-style functions."""
    rows = None
    for x in inputs:
        want, got = reference(x), other(x)
        if rows is None:
            rows = [dict(max=0.0, sq=0.0, n=0) for _ in want]
        for row, w, g in zip(rows, want, got):
            err = np.abs(np.asarray(g, np.float32) - w) / w.std()
            row['max'] = max(row['max'], float(err.max()))
            row['sq'] += float((err ** 2).sum())
            row['n'] += err.size
    return [dict(max=r['max'], rms=(r['sq'] / r['n']) ** 0.5) for r in rows]
