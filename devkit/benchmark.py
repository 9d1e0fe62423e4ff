"""Side-by-side speed, memory and op counts of this package and the reference SwinV2
implementations, on a CPU or a GPU, in float32 or under autocast.

Latency: every implementation is built in one process and timed in interleaved rounds (each
round runs each model once, in a rotating order), so machine noise hits them alike; medians
over rounds, warm-up excluded. On a GPU each step is timed with CUDA events.
Peak memory: on CPU each implementation in fresh processes of its own (``measure_memory``: the
median of a few, as one process's figure moves by about 10%): the kernel's resident high-water
mark is reset before a step and read after it (Linux ``clear_refs``), less the resident size
before the step. On a GPU, the allocator's peak during the first step less what was allocated
before it (``cuda_step_peak_mb``).
Op counts: kernel-launching ATen ops of one step on the meta device (``opcount.py``).
Varying shapes: with ``shapes``, each round's input has the next shape of the list (the same for
every implementation in the round), as in mmdet's detection recipes (:func:`keep_ratio_shapes`).
FLOPs: traced once (mmengine's FlopAnalyzer counts a multiply-add as one; we report 2x that)
and on CPU set against the machine's fp32 matmul rates measured on a square ``torch.mm`` and
on oneDNN's GEMM (see kernels/onednn.py).
"""
from __future__ import annotations

import copy
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from torch import nn

from swinv2_backbone.apps.large import peak_memory
from swinv2_backbone.apps.quantize import open_runtime
from .testing import trained_biases_

__all__ = ['COCO_SIZES', 'FP32', 'IMPLEMENTATIONS', 'RUNTIMES', 'bf16_error', 'build',
           'cuda_step_peak_mb', 'default_impls', 'is_exported', 'keep_ratio_batch',
           'keep_ratio_shapes', 'matmul_gflops', 'measure_memory', 'model_gflops', 'op_counts',
           'run_benchmark', 'takes_any_size']

TINY = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))


class _Features(nn.Module):
    """Wraps a model so that ``forward(x)`` returns its four stage maps (a tuple)."""

    def __init__(self, model: nn.Module, fn: Callable) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x: torch.Tensor):
        return tuple(self.fn(self.model, x))


class _GraphedInference(nn.Module):
    """A peer's inference forward replayed from a CUDA graph captured by hand, as a user could
    (``torch.cuda.graph``; one graph per input shape, dtype and autocast dtype, captured on
    first sight after two warm-up calls; fresh outputs on each call, as ours returns): the
    time of the peer's kernels without the host's dispatch. Inference only: a graphed
    training step of timm failed under ``make_graphed_callables`` (BENCHMARKS.md). On the
    meta device (op counts) it runs eagerly."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._graphs = {}

    def forward(self, x: torch.Tensor) -> tuple:
        if x.device.type == 'meta':
            return self.model(x)
        if x.device.type != 'cuda' or torch.is_grad_enabled():
            raise ValueError(f'a graphed peer times CUDA inference only, not {x.device.type} '
                             f'with grad {torch.is_grad_enabled()}')
        from swinv2_backbone.compat import autocast_dtype, autocast_enabled
        amp = autocast_dtype('cuda') if autocast_enabled('cuda') else None
        key = (x.shape, x.dtype, amp)
        if key not in self._graphs:
            static = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.model(static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # autocast's weight cache would keep casts made during the capture: off
            cast = torch.autocast('cuda', dtype=amp, cache_enabled=False) if amp else nullcontext()
            with torch.cuda.graph(graph), cast:
                out = self.model(static)
            self._graphs[key] = graph, static, out
        graph, static, out = self._graphs[key]
        static.copy_(x)
        graph.replay()
        return tuple(o.clone() for o in out)


class _Exported(nn.Module):
    """A model exported to ONNX and run by onnxruntime or OpenVINO on the CPU, timed like the
    PyTorch rows (inference only; autocast does not reach it, the precision is the runtime's:
    ``hint`` 'f32' or 'bf16' for OpenVINO). Both are exported as users export them for any
    size (TorchScript exporter: seconds instead of minutes): ours by ``export_onnx``, timm
    built with ``dynamic_img_size=True`` (masks made in forward) with dynamic batch, height
    and width. ``static``: each fixed at the benchmark's input instead (ours ``dynamic=False``,
    timm as built at that size), so that the runtime folds windows, masks and position bias."""

    def __init__(self, model: nn.Module, runtime: str, hint: str, static: bool,
                 int8: bool = False) -> None:
        super().__init__()
        import tempfile
        self.runtime, self.hint, self.static, self.int8 = runtime, hint, static, int8
        self.example_model = model.eval()
        self._run = None
        self._dir = tempfile.TemporaryDirectory(prefix='swinv2-bench-')
        self.path = Path(self._dir.name) / 'model.onnx'

    def _load(self, x: torch.Tensor) -> None:
        from swinv2_backbone import SwinV2Backbone, export_onnx
        from swinv2_backbone.compat import TORCHSCRIPT_EXPORT
        model = self.example_model
        if isinstance(model, SwinV2Backbone):
            export_onnx(model, self.path, exporter='torchscript', dynamic=not self.static,
                        example=x)
        else:
            axes = None if self.static else {'image': {0: 'batch', 2: 'height', 3: 'width'}}
            with torch.no_grad(), torch.autocast('cpu', enabled=False):
                torch.onnx.export(model, (x,), str(self.path), input_names=['image'],
                                  opset_version=17, dynamic_axes=axes, **TORCHSCRIPT_EXPORT)
        if self.int8:  # calibrated on random inputs: for speed, not accuracy
            from swinv2_backbone.apps.quantize import quantize
            calibration = [torch.randn_like(x).numpy() for _ in range(4)]
            suffix = '.xml' if self.runtime == 'openvino' else '.onnx'
            self.path = quantize(self.path, self.path.with_name('int8' + suffix), calibration,
                                 self.runtime)
        self._run = open_runtime(self.path, self.runtime, self.hint, torch.get_num_threads())

    def forward(self, x: torch.Tensor):
        if x.device.type != 'cpu':
            raise ValueError(f'{self.runtime} rows run on the CPU, not {x.device}')
        if self._run is None:
            self._load(x)
        return tuple(torch.from_numpy(o) for o in self._run(x.numpy()))


# runtime rows: name suffix -> (runtime, OpenVINO precision hint, static file, int8)
RUNTIMES = {f' ({runtime}{" " + hint if hint != "f32" else ""}{", static" if static else ""})':
            (runtime, hint, static, False)
            for runtime, hint in (('onnxruntime', 'f32'), ('openvino', 'f32'), ('openvino', 'bf16'))
            for static in (False, True)}
# int8 files (apps.quantize) for any size, ours only
INT8_RUNTIMES = {f' ({runtime} int8)': (runtime, 'f32', False, True)
                 for runtime in ('onnxruntime', 'openvino')}


def _ours(size, window, **kw):
    from swinv2_backbone import SwinV2Backbone
    return SwinV2Backbone('tiny', window_size=window, out_norm=False, drop_path_rate=0.0, **kw)


def _ours_gemm(size, window, onednn: bool):
    from swinv2_backbone.runtime.execution import Request
    return _ours(size, window, execution=Request('cpu', onednn=onednn))


def _ours_unfused(size, window, **kw):
    from swinv2_backbone.runtime.execution import Request
    return _ours(size, window, execution=Request('batched', fused=False), **kw)


def _timm(size, window, dynamic: bool = False):
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    model = SwinTransformerV2(img_size=size, window_size=window, num_classes=0,
                              drop_path_rate=0.0, dynamic_img_size=dynamic, **TINY)
    return _Features(model, lambda m, x: m.forward_intermediates(x, intermediates_only=True))


def _hf(size, window):
    from transformers import Swinv2Backbone, Swinv2Config
    config = Swinv2Config(image_size=size, window_size=window, drop_path_rate=0.0,
                          embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                          out_features=['stage1', 'stage2', 'stage3', 'stage4'])
    return _Features(Swinv2Backbone(config), lambda m, x: m(x).feature_maps)


def _mmpretrain(size, window):
    from mmpretrain.models import SwinTransformerV2
    return SwinTransformerV2(arch='tiny', img_size=size, window_size=window,
                             out_indices=(0, 1, 2, 3), drop_path_rate=0.0, norm_cfg=None)


def _exported(build_: Callable, runtime: str, hint: str, static: bool, int8: bool, size,
              window):
    kw = {} if build_ is _ours or static else dict(dynamic=True)
    return _Exported(build_(size, window, **kw), runtime, hint, static, int8)


IMPLEMENTATIONS: dict[str, Callable] = {
    'swinv2_backbone': _ours,
    'swinv2_backbone (with_cp)': lambda size, window: _ours(size, window, with_cp=True),
    'swinv2_backbone (cuda_graph)': lambda size, window: _ours(size, window, cuda_graph=True),
    'swinv2_backbone (with_cp, cuda_graph)':
        lambda size, window: _ours(size, window, with_cp=True, cuda_graph=True),
    'swinv2_backbone (with_cp=mlp)': lambda size, window: _ours(size, window, with_cp='mlp'),
    'swinv2_backbone (with_cp=mlp, cuda_graph)':
        lambda size, window: _ours(size, window, with_cp='mlp', cuda_graph=True),
    # the batched path without its fused Triton kernels (kernels/fused.py), which run on GPUs
    'swinv2_backbone (unfused)': _ours_unfused,
    'swinv2_backbone (cuda_graph, unfused)':
        lambda size, window: _ours_unfused(size, window, cuda_graph=True),
    # the cpu path with each GEMM library, whatever this CPU's default (kernels/onednn.py)
    'swinv2_backbone (oneDNN GEMMs)':
        lambda size, window: _ours_gemm(size, window, onednn=True),
    'swinv2_backbone (MKL GEMMs)':
        lambda size, window: _ours_gemm(size, window, onednn=False),
    'timm': _timm,
    'timm (cuda_graph)': lambda size, window: _GraphedInference(_timm(size, window)),
    'hf': _hf,
    'mmpretrain': _mmpretrain,
    **{f'{peer}{suffix}': partial(_exported, build_, *RUNTIMES[suffix])
       for peer, build_ in (('swinv2_backbone', _ours), ('timm', _timm))
       for suffix in RUNTIMES},
    **{f'swinv2_backbone{suffix}': partial(_exported, _ours, *runtime)
       for suffix, runtime in INT8_RUNTIMES.items()},
}


# the builders of the rows that take inputs of any size when built for one, where that differs
_ANY_SIZE = {'timm': partial(_timm, dynamic=True)}

# ``NAME (fp32)``: implementation NAME run in float32 even when the others run under autocast
FP32 = ' (fp32)'


def is_exported(name: str) -> bool:
    """Whether row ``name`` runs an exported file on a runtime (a suffix of :data:`RUNTIMES`).
    """
    return any(name.endswith(suffix) for suffix in (*RUNTIMES, *INT8_RUNTIMES))


def takes_any_size(name: str) -> bool:
    """Whether ``build(name, ..., any_size=True)`` takes inputs of any size: ours in eager
    PyTorch (with ``cuda_graph``: a graph per shape), HF, timm with ``dynamic_img_size``; not
    mmpretrain, graphed timm nor the exported files."""
    name = name.removesuffix(FP32)
    return name in _ANY_SIZE or name == 'hf' or (
        name.startswith('swinv2_backbone') and not is_exported(name))


def build(name: str, size: tuple[int, int], window: int, any_size: bool = False) -> nn.Module:
    """Implementation ``name`` for inputs of ``size`` (``any_size``: of any size, see
    :func:`takes_any_size`), with trained-like biases."""
    base = name.removesuffix(FP32)
    if any_size and not takes_any_size(base):
        raise ValueError(f'{name!r} takes inputs of one size only')
    model = (_ANY_SIZE.get(base) if any_size else None) or IMPLEMENTATIONS[base]
    model = model(size, window)
    trained_biases_(model)
    return model


def default_impls(device: str, mode: str, runtime: str | None = None, amp: str | None = None,
                  any_size: bool = False) -> list[str]:
    """The rows ``tools/benchmark.py`` times when none are named: all but ``with_cp`` and the
    GEMM libraries; ``cuda_graph`` and ``unfused`` only on a GPU; graphed peers only in
    inference; with ``runtime``, our export and timm's on it (OpenVINO's bf16 hint with
    ``amp='bf16'``), a file for any size, then one fixed at the size; with ``any_size``, only
    the rows that take inputs of any size (:func:`takes_any_size`)."""
    names = [n for n in IMPLEMENTATIONS if 'with_cp' not in n and 'GEMMs' not in n
             and (device == 'cuda' or ('cuda_graph' not in n and 'unfused' not in n))
             and (mode == 'inference' or not n.startswith('timm ('))
             and not is_exported(n)
             and (not any_size or takes_any_size(n))]
    if runtime:
        for static in ('', ', static'):
            suffix = f' ({runtime}{" bf16" if amp == "bf16" else ""}{static})'
            names += [f'swinv2_backbone{suffix}', f'timm{suffix}']
    return names


# the (H, W) of COCO's commonest image sizes (train2017): the inputs of mmdet's recipes
COCO_SIZES = ((480, 640), (427, 640), (640, 480), (426, 640), (428, 640), (375, 500),
              (425, 640), (640, 427), (424, 640), (512, 640), (360, 640), (640, 640))


def keep_ratio_shapes(steps: int, batch: int, scale: tuple[int, int] = (1333, 800),
                      divisor: int = 32, seed: int = 0) -> list[tuple[int, int]]:
    """The (H, W) of ``steps`` batches as mmdet's detection recipes make them: ``batch``
    images drawn from :data:`COCO_SIZES`, each resized keeping its ratio to fit ``scale``
    (``Resize(scale=(1333, 800), keep_ratio=True)``: long side at most 1333, short side at
    most 800), padded together to the largest height and width, rounded up to a multiple of
    ``divisor`` (``DetDataPreprocessor(pad_size_divisor=32)``)."""
    rng = random.Random(seed)
    return [keep_ratio_batch(rng.choices(COCO_SIZES, k=batch), scale, divisor)
            for _ in range(steps)]


def keep_ratio_batch(sizes: list[tuple[int, int]], scale: tuple[int, int] = (1333, 800),
                     divisor: int = 32) -> tuple[int, int]:
    """The (H, W) of the batch mmdet makes of images of ``sizes`` (see
    :func:`keep_ratio_shapes`)."""
    long_edge, short_edge = max(scale), min(scale)
    resized = []
    for h, w in sizes:
        factor = min(long_edge / max(h, w), short_edge / min(h, w))
        resized.append((int(h * factor + 0.5), int(w * factor + 0.5)))
    return tuple(-(-max(dims) // divisor) * divisor for dims in zip(*resized))


def op_counts(names: list[str], size: tuple[int, int], window: int, mode: str,
              batch: int) -> dict[str, int | None]:
    """Kernel-launching ops of one step of each implementation on the meta device (the
    paths a GPU takes); None where a model does not run there."""
    from .opcount import count_step_ops
    counts = {}
    for name in names:
        try:
            counts[name] = count_step_ops(partial(build, name, size, window), size, batch,
                                          mode).total
        except (RuntimeError, NotImplementedError, TypeError, ValueError):  # cpu path: no meta
            counts[name] = None
    return counts


def matmul_gflops(n: int = 2048, repeats: int = 10, backend: str = 'mm') -> float:
    """A fp32 matmul rate of this machine: GFLOP/s of the fastest of ``repeats`` n x n x n
    products (a busy VM only ever slows one down).

    ``backend='mm'`` times ``torch.mm`` (MKL on x86: what fp32 ``nn.Linear`` runs on);
    ``'onednn'`` times oneDNN's GEMM (see kernels/onednn.py), with AVX-512 the faster of the two
    on AMD processors.
    """
    from swinv2_backbone.hardware import ONEDNN
    from swinv2_backbone.kernels.onednn import _OP
    a, b = torch.randn(n, n), torch.randn(n, n)
    if backend == 'onednn' and not ONEDNN:
        raise RuntimeError('this PyTorch has no oneDNN linear op')
    run = partial(_OP, a, b, None, 'none', [], '') if backend == 'onednn' else \
        partial(torch.mm, a, b)
    run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9


def gemm_bound_ms(gflop: float, rates: dict[str, float]) -> float:
    """The least time ``gflop`` of matrix products can take at the fastest of ``rates``
    (GFLOP/s, from :func:`matmul_gflops`), in ms: no implementation of the model runs faster
    on this machine, whatever it does besides its GEMMs."""
    return 1e3 * gflop / max(rates.values())


def bf16_error(size: tuple[int, int], window: int,
               seed: int = 0) -> dict[str, list[dict[str, float]]]:
    """Per stage, |features - fp32 features| relative to the fp32 features' std (max, mean and
    root-mean-square), this package, random weights, for

    - ``autocast``: bf16 autocast;
    - ``bf16_weights``: float32 arithmetic with only the GEMM weight matrices rounded to bf16:
      the error that keeping the weights in bf16 causes by itself.
    """
    torch.manual_seed(seed)
    model = _ours(size, window).eval()
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in rounded.named_parameters():
            if p.dim() == 2 and 'cpb_mlp' not in name:  # the blocks' and mergings' linears
                p.copy_(p.bfloat16())
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
        floor = rounded(x)

    def rows(outs):
        diffs = [(o.float() - r).abs() / r.std() for o, r in zip(outs, ref)]
        return [dict(max=d.max().item(), mean=d.mean().item(),
                     rms=d.pow(2).mean().sqrt().item()) for d in diffs]
    return dict(autocast=rows(low), bf16_weights=rows(floor))


def model_gflops(size: tuple[int, int], window: int, batch: int = 1) -> float:
    """FLOPs of one SwinV2-T forward (2 per multiply-add), in G."""
    from .analysis import flop_analyzer
    # the explicit attention path: the same arithmetic in plain ops, which FlopAnalyzer counts
    model = _ours(size, window, execution='reference').eval()
    analyzer = flop_analyzer(model, (torch.randn(batch, 3, *size),))
    with torch.no_grad():  # traced without autograd: no custom autograd functions to hide ops
        return 2 * analyzer.total() / 1e9


def _step(model: nn.Module, x: torch.Tensor, mode: str, amp: torch.dtype | None) -> None:
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        if mode == 'inference':
            with torch.inference_mode():
                model(x)
            return
        outs = model(x)
    sum(o.float().mean() for o in outs).backward()


def _timed_step(model: nn.Module, x: torch.Tensor, mode: str, amp: torch.dtype | None) -> float:
    """Seconds of one step: CUDA events on a GPU, the wall clock on a CPU."""
    if x.device.type != 'cuda':
        t = time.perf_counter()
        _step(model, x, mode, amp)
        return time.perf_counter() - t
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    _step(model, x, mode, amp)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def run_benchmark(names: list[str], size: tuple[int, int], window: int, mode: str,
                  batch: int, rounds: int, warmup: int, amp: torch.dtype | None = None,
                  device: str = 'cpu', log=print,
                  shapes: list[tuple[int, int]] | None = None) -> dict[str, list[float]]:
    """Interleaved timing of ``names``; returns seconds per step, one list per name. Names
    ending in ``FP32`` run in float32 whatever ``amp`` says. ``shapes``: round r's input is
    ``shapes[r % len(shapes)]`` in size (the models built for any size), not ``size``."""
    torch.manual_seed(0)
    models = {}
    for name in names:
        log(f'  building {name}')
        model = build(name, size, window, any_size=shapes is not None).to(device)
        model.train(mode == 'training')  # mmpretrain's train() returns None: do not chain
        models[name] = model
    x = torch.randn(batch, 3, *size, device=device)
    times = {name: [] for name in names}
    for r in range(warmup + rounds):
        if shapes is not None:
            x = torch.randn(batch, 3, *shapes[r % len(shapes)], device=device)
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            sec = _timed_step(models[name], x, mode, None if name.endswith(FP32) else amp)
            if r >= warmup:
                times[name].append(sec)
            for p in models[name].parameters():
                p.grad = None
        log(f'  round {r + 1}/{warmup + rounds}' + (' (warm-up)' if r < warmup else '') + ': '
            + ', '.join(f'{n} {times[n][-1] * 1e3:.0f} ms' for n in names if times[n]
                        and r >= warmup))
    return times


def cuda_step_peak_mb(name: str, size: tuple[int, int], window: int, mode: str, batch: int,
                      amp: torch.dtype | None) -> float:
    """GPU memory (MB) allocated at the peak of the first two steps beyond what was allocated
    before them (the model and the input); gradients are dropped between them. Two: with
    ``cuda_graph`` the second step captures (graphs.py), and its memory pool counts."""
    torch.manual_seed(0)
    model = build(name, size, window).cuda()
    model.train(mode == 'training')
    x = torch.randn(batch, 3, *size, device='cuda')
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    for _ in range(2):
        _step(model, x, mode, amp)
        for p in model.parameters():
            p.grad = None
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    del model, x
    torch.cuda.empty_cache()
    return peak


def _step_peak_mb(model: nn.Module, x: torch.Tensor, mode: str) -> float:
    """Peak resident memory added by the first step: Linux's high-water mark, reset just
    before. (After a warm-up step the allocator's cache hides most of it.)"""
    with peak_memory(trim=False) as m:
        _step(model, x, mode, None)
    return m.added / 2**20


def measure_memory(name: str, size: tuple[int, int], window: int, mode: str,
                   batch: int, runs: int = 3) -> float:
    """Peak resident-memory growth (MB) of one step: the median over ``runs`` fresh
    processes. One process's figure moves by about 10% from run to run (SwinV2-T at 512x512
    on a Xeon, five runs each: ours 68-77 MB, timm's 129-148, HF's 185-197), which is the
    size of the margins the targets set."""
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f'runs must be a positive int, not {runs!r}')
    code = (
        'import json, sys, torch\n'
        'from devkit import benchmark as b\n'
        f'model = b.build({name!r}, {tuple(size)!r}, {window})\n'
        f'model.train({mode == "training"})\n'
        f'x = torch.randn({batch}, 3, {size[0]}, {size[1]})\n'
        f'print(json.dumps(b._step_peak_mb(model, x, {mode!r})))\n')
    peaks = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                             check=True)
        peaks.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return statistics.median(peaks)
