#!/usr/bin/env python
"""Benchmark SwinV2-T feature extraction: this package beside timm, HF transformers, mmpretrain.

    python tools/benchmark.py [--device cpu|cuda] [--amp bf16|fp16] [--size H W] [--window 8]
                              [--mode inference|training] [--batch 1] [--rounds 10]
                              [--warmup 2] [--impls NAME ...] [--no-memory] [--memory-runs 3]
                              [--json FILE]
                              [--runtime onnxruntime|openvino] [--resize 1333 800]
                              [--keep-freed-memory]

Latency is the median over interleaved rounds in one process (warm-up excluded; CUDA events on a
GPU); peak memory is measured per implementation (on CPU the median of --memory-runs fresh
processes of its own); op counts are the kernel-launching ATen ops of one step on the meta device,
the paths a GPU takes. With --amp bf16 on a CPU our own float32 runs in the same rounds too, and
the bf16 features are compared with float32. ``--runtime`` adds our ONNX export and timm's, run by
onnxruntime or OpenVINO (with --amp bf16: OpenVINO's bf16 precision hint), to the same interleaved
rounds: files for any size (dynamic axes), and files fixed at --size (``, static``).
``--resize 1333 800`` gives each round a new input shape instead of --size, the padded batch
of COCO-sized images that mmdet's ``Resize(scale=(1333, 800), keep_ratio=True)`` and
``pad_size_divisor=32`` make (a shape per step, as in training a detector); latency is then the
mean over rounds, and op counts and memory are taken at the largest shape.
``--keep-freed-memory`` has glibc keep the memory tensors free for the next forward, for every
implementation alike (devkit/allocator.py): CPU forwards without page faults.
See devkit/benchmark.py.
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout)
import argparse
import json
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
from swinv2_backbone.apps.extract import AMP_DTYPES
from devkit import benchmark as bench
from swinv2_backbone.files import atomic_write
from devkit.allocator import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES), help='autocast to this dtype')
    parser.add_argument('--size', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    parser.add_argument('--window', type=int, default=8)
    parser.add_argument('--mode', choices=['inference', 'training'], default='inference')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=None, help='default: all cores')
    parser.add_argument('--impls', nargs='+', choices=list(bench.IMPLEMENTATIONS),
                        metavar='IMPL',
                        help=f'of {", ".join(map(repr, bench.IMPLEMENTATIONS))}; default: all but '
                             'with_cp and the GEMM libraries, cuda_graph and unfused only on a '
                             'GPU, graphed peers only in inference')
    parser.add_argument('--no-memory', action='store_true', help='skip the memory measurements')
    parser.add_argument('--memory-runs', type=int, default=3,
                        help='CPU: fresh processes per implementation whose median peak is '
                        'reported (default 3)')
    parser.add_argument('--saved', action='store_true',
                        help='training: also the MiB a CUDA step keeps for backward, '
                        'estimated on fake CUDA tensors (devkit/activations.py)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--runtime', choices=['onnxruntime', 'openvino'],
                        help='also our ONNX export and timm\'s, run by this runtime (CPU)')
    parser.add_argument('--resize', type=int, nargs=2, metavar=('LONG', 'SHORT'),
                        help="a new input shape each round: mmdet's keep-ratio resize of "
                        'COCO-sized images to fit LONG x SHORT, batched, padded to 32')
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help='keep freed CPU memory for reuse (glibc), for every implementation')
    args = parser.parse_args(argv)
    if args.memory_runs < 1:
        parser.error(f'--memory-runs must be at least 1, not {args.memory_runs}')
    device = torch.device(args.device)
    if args.runtime and (device.type != 'cpu' or args.mode != 'inference'):
        parser.error('--runtime: exported models run CPU inference only')
    if args.resize and args.runtime:
        parser.error('--resize: exported models are timed at --size only')
    if args.impls is None:
        args.impls = bench.default_impls(device.type, args.mode, args.runtime, args.amp,
                                         any_size=bool(args.resize))
    fixed = [n for n in args.impls if args.resize and not bench.takes_any_size(n)]
    if fixed:
        parser.error(f'--resize: {", ".join(fixed)} take(s) inputs of one size only')
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no GPU is visible to this PyTorch')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory and not keep_freed_memory():
        parser.error('--keep-freed-memory: this C library is not glibc')
    size, shapes = tuple(args.size), None
    if args.resize:
        shapes = bench.keep_ratio_shapes(args.warmup + args.rounds, args.batch,
                                         tuple(args.resize))
        size = max(shapes, key=lambda s: s[0] * s[1])  # op counts and memory: the largest
    amp = AMP_DTYPES.get(args.amp)
    cpu = device.type == 'cpu'
    impls = list(args.impls)
    own_fp32 = cpu and amp == torch.bfloat16 and 'swinv2_backbone' in impls
    if own_fp32:  # our own fp32, timed in the same rounds
        impls.insert(impls.index('swinv2_backbone') + 1, 'swinv2_backbone' + bench.FP32)
    where = torch.cuda.get_device_name(device) if not cpu else \
        f'CPU, {torch.get_num_threads()} threads'
    inputs = f'{args.batch}x3x{size[0]}x{size[1]}' if shapes is None else \
        f'{args.batch}x3xHxW of {len(set(shapes))} shapes (mmdet keep-ratio resize to ' \
        f'{args.resize[0]}x{args.resize[1]}, largest {size[0]}x{size[1]})'
    print(f'SwinV2-T window {args.window}, input {inputs}, '
          f'{args.mode}, {args.amp + " autocast" if amp else "fp32"}, {where}, '
          f'{"freed memory kept, " if args.keep_freed_memory else ""}'
          f'torch {torch.__version__}')
    rates = {}
    if cpu:
        print('measuring the fp32 matmul rates ...')
        rates = {backend: bench.matmul_gflops(backend=backend) for backend in ('mm', 'onednn')}
        print(f'  fp32 matmul: torch.mm {rates["mm"]:.1f} GFLOP/s, oneDNN '
              f'{rates["onednn"]:.1f} GFLOP/s')
    gflops = None  # with varying shapes: not traced (seconds per shape)
    if shapes is None:
        gflops = bench.model_gflops(size, args.window, args.batch)
        if args.mode == 'training':
            gflops *= 3  # backward costs about twice the forward
        print(f'  model: {gflops:.1f} GFLOP per step')
    print('counting ops on the meta device ...')
    ops = bench.op_counts([n for n in args.impls if not bench.is_exported(n)], size, args.window,
                          args.mode, args.batch)
    times = bench.run_benchmark(impls, size, args.window, args.mode, args.batch,
                                args.rounds, args.warmup, amp, args.device, shapes=shapes)
    memory = {}
    if not args.no_memory:
        for name in args.impls:
            print(f'  peak memory of {name} ...')
            memory[name] = bench.measure_memory(
                name, size, args.window, args.mode, args.batch, args.memory_runs) if cpu \
                else bench.cuda_step_peak_mb(name, size, args.window, args.mode, args.batch, amp)

    saved = {}
    if args.saved and args.mode == 'training':
        from devkit.activations import cuda_saved_for_backward_mib
        for name in args.impls:
            if 'cuda_graph' not in name:  # a replay keeps what eager keeps
                saved[name] = cuda_saved_for_backward_mib(
                    partial(bench.build, name, size, args.window), size, args.batch, amp)
                print(f'  a CUDA step keeps for backward (estimated): {name} '
                      f'{saved[name]:.0f} MiB')
    # a step's time: the median at one shape; over varying shapes the mean (each counts)
    statistic = 'median' if shapes is None else 'mean'
    medians = {n: getattr(statistics, statistic)(t) for n, t in times.items()}
    peers = [n for n in impls if not n.startswith('swinv2_backbone')]
    best_peer = min((medians[n] for n in peers), default=None)
    rows = []
    width = max(34, *map(len, impls))
    header = f'{"implementation":{width}} {statistic + " ms":>10} {"best ms":>9} {"img/s":>7} ' \
        f'{"GFLOP/s":>8} ' + \
        (f'{"% mm":>6} {"% oneDNN":>8} ' if cpu else '') + \
        f'{"peak MB":>8} {"ops":>6} {"vs best peer":>12}'
    print('\n' + header + '\n' + '-' * len(header))
    for name in impls:
        sec = medians[name]
        row = dict(implementation=name, **{f'{statistic}_ms': sec * 1e3},
                   best_ms=min(times[name]) * 1e3, images_per_s=args.batch / sec,
                   gflop_per_s=gflops / sec if gflops else None, peak_mb=memory.get(name),
                   ops=ops.get(name), speedup_vs_best_peer=best_peer / sec if best_peer else None,
                   saved_for_backward_mb=saved.get(name))
        if cpu and gflops:
            row.update(mm_fraction=gflops / sec / rates['mm'],
                       onednn_fraction=gflops / sec / rates['onednn'])
        rows.append(row)

        def cell(key, width, spec, scale=1, suffix=''):
            return f'{"-":>{width}}' if row.get(key) is None else \
                f'{row[key] * scale:{width - len(suffix)}{spec}}{suffix}'
        rates_cols = cell('mm_fraction', 6, '.1f', 100, '%') + ' ' + \
            cell('onednn_fraction', 8, '.1f', 100, '%') + ' ' if cpu else ''
        print(f'{name:{width}} {sec * 1e3:10.1f} {row["best_ms"]:9.1f} '
              f'{row["images_per_s"]:7.2f} {cell("gflop_per_s", 8, ".1f")} {rates_cols}'
              f'{cell("peak_mb", 8, ".0f")} {cell("ops", 6, "d")} '
              f'{cell("speedup_vs_best_peer", 12, ".2f", suffix="x")}')
    result = dict(args=vars(args), device=where, torch=torch.__version__, matmul_gflops=rates,
                  model_gflop=gflops, rows=rows, shapes=shapes)
    # each exported row of ours beside timm's export on the same runtime, exported alike
    versus = {suffix: medians[f'timm{suffix}'] / medians[f'swinv2_backbone{suffix}']
              for suffix in bench.RUNTIMES
              if f'timm{suffix}' in medians and f'swinv2_backbone{suffix}' in medians}
    if versus:
        result['export_vs_timm_export'] = versus
        print("\nour export's speed over timm's export on the same runtime: " +
              ', '.join(f'{suffix.strip(" ()")}: {ratio:.2f}x' for suffix, ratio in versus.items()))
    if rates and gflops and amp is None and best_peer:
        result['gemm_bound_ms'] = bound = bench.gemm_bound_ms(gflops, rates)
        result['max_speedup_vs_best_peer'] = ceiling = 1e3 * best_peer / bound
        print(f'\nAt {max(rates.values()):.1f} GFLOP/s the {gflops:.1f} GFLOP of matrix products '
              f'take at least {bound:.0f} ms here: no implementation can be more than '
              f'{ceiling:.2f}x the fastest peer on this machine.')
    if own_fp32:
        result['bf16_speedup_over_own_fp32'] = ratio = \
            medians['swinv2_backbone' + bench.FP32] / medians['swinv2_backbone']
        result['bf16_error'] = errors = bench.bf16_error(size, args.window)
        print(f'\nbf16 autocast: {ratio:.2f}x our fp32 speed. |x - fp32| / std(fp32) per stage '
              '(max / mean / rms):')
        for key, label in (('autocast', 'bf16 autocast'),
                           ('bf16_weights', 'fp32 with bf16-rounded weights')):
            print(f'  {label:31}' + ', '.join(
                f'{e["max"]:.1e} / {e["mean"]:.1e} / {e["rms"]:.1e}' for e in errors[key]))
    if args.json:
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
