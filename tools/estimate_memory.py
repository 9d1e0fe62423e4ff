#!/usr/bin/env python
"""Estimate the per-GPU memory of training SwinV2 backbones under DDP and FSDP, without a GPU.

    python tools/estimate_memory.py [--ranks 8] [--rows all|quick]

Prints a markdown table: for each backbone at a config's resolution, per-rank GiB under DDP
(bf16 autocast) and FSDP (FULL_SHARD, bf16 mixed precision) over ``--ranks`` processes, with and
without ``with_cp``, and whether that fits a 40 GB and an 80 GB GPU. How each number is made,
and what it leaves out: devkit/memory.py. Its fake CUDA tensors need torch >=
2.14, or >= 2.4 with a GPU (devkit.activations.FAKE_CUDA).
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout)
import argparse
import sys

from devkit.memory import training_memory_gib

# (backbone, window, input H x W, images per GPU, the configs that train it so)
ROWS = [
    ('base', 16, (800, 1344), 2, 'Mask R-CNN / Cascade, COCO'),
    ('base', 16, (512, 512), 2, 'UperNet / Mask2Former, ADE20K'),
    ('large', 24, (1536, 1536), 1, 'HTC / DINO, COCO at the paper\'s 1536'),
    ('large', 24, (640, 640), 2, 'UperNet / Mask2Former, ADE20K 640'),
    ('giant', 32, (1536, 1536), 1, 'HTC, COCO at the paper\'s 1536'),
    ('giant', 40, (640, 640), 2, 'UperNet, ADE20K 640'),
]
QUICK = [('tiny', 8, (256, 256), 2, 'a quick check')]
GB = 1e9 / 2**30  # GiB in a GB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ranks', type=int, default=8, help='processes FSDP shards over')
    parser.add_argument('--rows', choices=['all', 'quick'], default='all',
                        help="'all': the table in BENCHMARKS.md (SwinV2-B/L/G); 'quick': SwinV2-T "
                             'only, in seconds')
    args = parser.parse_args(argv)
    if args.ranks < 1:
        print(f'error: --ranks must be >= 1, got {args.ranks}', file=sys.stderr)
        return 2
    print('| backbone | input, per GPU | strategy | with_cp | states | activations | '
          'peak GiB | fits 40 / 80 GB |')
    print('|---|---|---|---|---:|---:|---:|---|')
    for arch, window, size, batch, where in (ROWS if args.rows == 'all' else QUICK):
        for strategy in ('ddp', 'fsdp'):
            for with_cp in (False, True):
                r = training_memory_gib(dict(arch=arch, window_size=window, with_cp=with_cp,
                                             drop_path_rate=0.0), size, batch, args.ranks,
                                        strategy)
                name = 'DDP' if strategy == 'ddp' else f'FSDP x{args.ranks}'
                fits = ' / '.join('yes' if r['peak'] < gb * GB else 'no' for gb in (40, 80))
                print(f'| SwinV2-{arch[0].upper()} w{window} ({r["params"] / 1e6:.0f} M) | '
                      f'{size[0]}x{size[1]} x{batch} ({where}) | {name} | '
                      f'{"on" if with_cp else "off"} | {r["states"]:.2f} | '
                      f'{r["activations"]:.2f} | **{r["peak"]:.2f}** | {fits} |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
