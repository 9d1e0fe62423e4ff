"""ONNX export: one file that takes any batch and any image size the backbone takes.

While a graph is recorded, :func:`~swinv2_backbone.runtime.execution.decide` runs the plain
ops and the stages compute windows, padding, shift masks and gather indices from the input's
shape inside the graph (:meth:`~swinv2_backbone.model.blocks.SwinV2Stage._forward_symbolic`),
so nothing is frozen at the example's size: odd sizes, maps smaller than a window (whose
windows shrink and stop shifting) and pad-then-shift all run from the one file.

Two exporters, decided once (:data:`DEFAULT_EXPORTER`):

- ``'torchscript'`` (the tracer; every torch): seconds. The default.
- ``'dynamo'`` (``torch.export``, then ONNX; torch >= 2.6): the exporter PyTorch develops.
  Its symbolic shapes make it slow on this model (minutes for SwinV2-T on a CPU).

Both give files that agree with PyTorch equally closely (tests/test_export.py), so the default
is the fast one.
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import torch

from ..model.backbone import SwinV2Backbone
from ..compat import CPU_HALF, TORCH_VERSION, TORCHSCRIPT_EXPORT

__all__ = ['BackboneNeck', 'DEFAULT_EXPORTER', 'EXPORTERS', 'INPUT_NAME', 'check_onnx',
           'export_backbone_neck', 'export_onnx', 'read_metadata']

EXPORTERS = ('dynamo', 'torchscript')
# the same agreement with PyTorch from both (tests/test_export.py): the one that takes seconds
DEFAULT_EXPORTER = 'torchscript'
INPUT_NAME = 'image'
# the example traced: batch 2 and sizes that are not 0 or 1 (torch.export specialises those)
EXAMPLE_SIZE = (2, 64, 96)


def export_onnx(model: SwinV2Backbone, path: str | os.PathLike, *, dynamic: bool = True,
                opset: int | None = None, half: bool = False, exporter: str | None = None,
                example: torch.Tensor | None = None) -> Path:
    """Export ``model`` to an ONNX file.

    Args:
        model: the backbone; exported in eval mode (its mode is restored afterwards), on its
            device, with ``with_cp``, frozen stages and ``execution`` making no difference.
        path: the ``.onnx`` file, written to a temporary name beside it and renamed.
        dynamic: batch, height and width are dynamic axes (``batch``, ``height``, ``width``);
            False fixes them at the example's.
        opset: ONNX opset; default: the exporter's.
        half: float16 weights, input and outputs.
        exporter: 'torchscript' (default, seconds) or 'dynamo' (torch >= 2.6, minutes).
        example: the (B, C, H, W) input traced; default batch 2 at 64x96.

    Returns:
        the path written. Its outputs are named after ``model.out_features``; its metadata
        (:func:`read_metadata`) holds the output channels and strides, the architecture and
        the windows.
    """
    if not isinstance(model, SwinV2Backbone):
        raise TypeError(f'export_onnx exports a SwinV2Backbone, got {type(model).__name__}')
    exporter = exporter or DEFAULT_EXPORTER
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    if exporter == 'dynamo' and TORCH_VERSION < (2, 6):
        raise ValueError(f"exporter='dynamo' needs torch >= 2.6 (this is {torch.__version__}); "
                         "use 'torchscript'")
    param = next(model.parameters())
    if half and exporter == 'torchscript' and param.device.type == 'cpu' and not CPU_HALF:
        raise ValueError(f'a half export with the TorchScript exporter runs the model in '
                         f'float16, which torch {torch.__version__} cannot on the CPU: move the '
                         'model to a CUDA GPU, or export with torch >= 2.6')
    path, example = _target_and_example(path, example, model,
                                        torch.float16 if half else param.dtype)
    if exporter == 'dynamo' and dynamic and (example.shape[0] < 2 or min(example.shape[2:]) < 2):
        raise ValueError(f'a dynamic dynamo export needs an example of batch >= 2 and sides >= 2 '
                         f'(torch.export fixes sizes 0 and 1), got {tuple(example.shape)}')
    if half:  # a copy: the caller's model stays float32
        model = copy.deepcopy(model).half()
    return _write(model, path, example, exporter, dynamic, opset, list(model.out_features),
                  _metadata(model, exporter, half, dynamic))


class BackboneNeck(torch.nn.Module):
    """A detector's or segmenter's SwinV2 backbone and the neck its head reads: ``model.neck``
    (FPN, ChannelMapper, ...) or, in MaskFormer and Mask2Former heads, the head's pixel decoder.

    ``forward`` returns the neck's maps as a tuple: the neck's outputs in order, or the pixel
    decoder's mask features followed by its multi-scale maps. ``out_features`` names them
    (``neck0``, ... or ``mask_features``, ``scale0``, ...) once :meth:`name_outputs` ran.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, SwinV2Backbone):
            raise TypeError(f'{type(model).__name__} has no SwinV2Backbone as .backbone '
                            f'(it has {type(backbone).__name__})')
        neck = getattr(model, 'neck', None)
        head = getattr(model, 'panoptic_head', None) or getattr(model, 'decode_head', None)
        self.is_pixel_decoder = neck is None and hasattr(head, 'pixel_decoder')
        if self.is_pixel_decoder:
            neck = head.pixel_decoder
        if neck is None:
            raise ValueError(f'{type(model).__name__} has no neck and no pixel decoder: export '
                             'its backbone alone (export_onnx(model.backbone, ...))')
        self.backbone, self.neck = backbone, neck
        self.in_channels = backbone.in_channels
        self.out_features: list[str] = []
        # the model's mode, which exporting (eval, then this mode) restores its parts to
        self.training = model.training

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.neck(self.backbone(x))
        if self.is_pixel_decoder:
            mask_features, multi_scale = out
            return (mask_features, *multi_scale)
        return tuple(out)

    def name_outputs(self, example: torch.Tensor) -> list[str]:
        """Run ``example`` once in eval mode (the mode is restored) and name the outputs."""
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                count = len(self(example))
        finally:
            self.train(training)
        self.out_features = ['mask_features', *(f'scale{i}' for i in range(count - 1))] \
            if self.is_pixel_decoder else [f'neck{i}' for i in range(count)]
        return self.out_features


# grid_sample (the pixel decoders' deformable attention in plain ops) needs opset 16
NECK_OPSET = 17


def export_backbone_neck(model: torch.nn.Module, path: str | os.PathLike, *,
                         dynamic: bool = True, opset: int = NECK_OPSET,
                         example: torch.Tensor | None = None) -> Path:
    """Export an mmdet or mmseg model's backbone and neck (:class:`BackboneNeck`) to one ONNX
    file, for any batch and size like :func:`export_onnx`, with the TorchScript exporter (the
    one mmdeploy traces the hosts' modules with). For heads that do not export (Mask2Former's:
    README, Deploy), the features they read can still run in a runtime.

    Returns:
        the path written; outputs named as ``BackboneNeck.out_features``; metadata as
        :func:`export_onnx`'s plus ``neck`` (its class) and ``outputs``.
    """
    wrapper = BackboneNeck(model)
    path, example = _target_and_example(path, example, wrapper.backbone,
                                        next(model.parameters()).dtype)
    names = wrapper.name_outputs(example)
    metadata = _metadata(wrapper.backbone, 'torchscript', False, dynamic)
    metadata.update(neck=type(wrapper.neck).__name__, outputs=names)
    return _write(wrapper, path, example, 'torchscript', dynamic, opset, names, metadata)


def _target_and_example(path: str | os.PathLike, example: torch.Tensor | None,
                        backbone: SwinV2Backbone, dtype: torch.dtype) -> tuple[Path, torch.Tensor]:
    """The output path, whose folder must exist, and the example traced (default: batch 2 at
    64x96) on the backbone's device in ``dtype``, checked as the backbone checks its input."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f'output folder {path.parent} does not exist')
    if example is None:
        B, H, W = EXAMPLE_SIZE
        example = torch.randn(B, backbone.in_channels, H, W)
    example = example.to(next(backbone.parameters()).device, dtype)
    backbone._check_input(example)
    return path, example


def _write(model: torch.nn.Module, path: Path, example: torch.Tensor, exporter: str,
           dynamic: bool, opset: int | None, names: list[str], metadata: dict) -> Path:
    """Export in eval mode (the mode is restored) into a folder beside ``path``, add the
    metadata, then rename: the file appears whole or not at all."""
    training = model.training
    model.eval()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f'.{path.name}.') as tmp:
        tmp_file = Path(tmp) / path.name
        try:
            # the file's precision is the model's: an autocast the caller is in stays out
            with torch.no_grad(), torch.autocast(example.device.type, enabled=False):
                _export(model, example, tmp_file, exporter, dynamic, opset, names)
        finally:
            model.train(training)
        _add_metadata(tmp_file, metadata)
        for f in Path(tmp).iterdir():  # the model, and external data if it has any
            os.replace(f, path.parent / f.name)
    return path


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path, exporter: str,
            dynamic: bool, opset: int | None, names: list[str]) -> None:
    kwargs: dict = dict(input_names=[INPUT_NAME], output_names=names)
    if opset is not None:
        kwargs['opset_version'] = opset
    if exporter == 'dynamo':
        if dynamic:
            Dim = torch.export.Dim
            side = dict(min=model.patch_size)
            kwargs['dynamic_shapes'] = {'x': {0: Dim('batch'), 2: Dim('height', **side),
                                              3: Dim('width', **side)}}
        program = torch.onnx.export(model, (example,), dynamo=True, **kwargs)
        # weights beyond protobuf's 2 GB go to a data file beside the model
        program.save(str(path), external_data=_large(model))
        return
    if dynamic:
        axes = {0: 'batch', 2: 'height', 3: 'width'}  # the input's and every output's
        kwargs['dynamic_axes'] = {name: axes for name in (INPUT_NAME, *names)}
    kwargs.update(TORCHSCRIPT_EXPORT)
    import warnings
    with warnings.catch_warnings():  # torch >= 2.9 deprecates this exporter, which we choose
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(model, (example,), str(path), **kwargs)


def _large(model: torch.nn.Module) -> bool:
    return sum(p.numel() * p.element_size() for p in model.parameters()) > (1 << 31) - (1 << 26)


def _metadata(model: SwinV2Backbone, exporter: str, half: bool, dynamic: bool) -> dict:
    from ..version import __version__
    return {
        'producer': f'swinv2_backbone {__version__}',
        'out_features': list(model.out_features),
        'out_channels': list(model.out_channels),
        'out_strides': list(model.out_strides),
        'embed_dim': model.num_features[0],
        'depths': list(model.depths),
        'num_heads': list(model.num_heads),
        'window_sizes': list(model.window_sizes),
        'pretrained_window_sizes': [s.blocks[0].attn.pretrained_window_size
                                    for s in model.stages],
        'patch_size': model.patch_size,
        'in_channels': model.in_channels,
        'dtype': 'float16' if half else 'float32',
        'dynamic': dynamic,
        'exporter': f'{exporter} (torch {torch.__version__})',
    }


def _add_metadata(path: Path, values: dict) -> None:
    import onnx
    proto = onnx.load(str(path), load_external_data=False)
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(path))


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata :func:`export_onnx` wrote into a file, decoded."""
    import onnx
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in proto.metadata_props}


def check_onnx(model: SwinV2Backbone | BackboneNeck, path: str | os.PathLike,
               sizes: list[tuple[int, int, int]], seed: int = 0) -> list[dict]:
    """Run the exported file in onnxruntime (CPU) against ``model`` in PyTorch (the backbone
    :func:`export_onnx` wrote, or the :class:`BackboneNeck` of :func:`export_backbone_neck`).

    Args:
        sizes: (batch, height, width) of each random input.

    Returns:
        one row per size: ``{'size': (B, H, W), 'rel_err': {name: max |ort - torch| / std}}``.
    """
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a float16 file warns of every CPU cast
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    dtype = np.float16 if session.get_inputs()[0].type == 'tensor(float16)' else np.float32
    g = torch.Generator().manual_seed(seed)
    rows = []
    was_training = model.training
    model.eval()
    try:
        for B, H, W in sizes:
            x = torch.randn(B, model.in_channels, H, W, generator=g)
            with torch.no_grad():
                want = model(x.to(next(model.parameters()).device))
            got = session.run(None, {INPUT_NAME: x.numpy().astype(dtype)})
            rows.append({'size': (B, H, W), 'rel_err': {
                name: float(np.abs(o.astype(np.float32) - w.cpu().numpy()).max() / w.std())
                for name, o, w in zip(model.out_features, got, want)}})
    finally:
        model.train(was_training)
    return rows
