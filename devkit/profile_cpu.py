#!/usr/bin/env python
"""The ATen ops a CPU inference forward spends its time in, for each implementation named.

    python -m devkit.profile_cpu [--size 800 1344] [--batch 1] [--threads 2]
        [--impls swinv2_backbone hf ...] [--shapes]

Prints, per implementation, the 15 ops with the most self CPU time over 2 profiled forwards
(after one warm-up), under torch.profiler: where one implementation loses to another.
``--shapes`` lists each op once per set of input shapes (which GEMM shapes run slowly).
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from . import benchmark as bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--size', type=int, nargs=2, default=(800, 1344))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--impls', nargs='+', default=['swinv2_backbone', 'hf'],
                        choices=list(bench.IMPLEMENTATIONS))
    parser.add_argument('--shapes', action='store_true', help='group by input shapes')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.batch, 3, *args.size)
    for name in args.impls:
        model = bench.build(name, tuple(args.size), 8).eval()
        with torch.inference_mode():
            model(x)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
                for _ in range(2):
                    model(x)
        print(f'== {name}')
        averages = prof.key_averages(group_by_input_shape=args.shapes)
        print(averages.table(sort_by='self_cpu_time_total', row_limit=25 if args.shapes else 15,
                             max_name_column_width=30, max_shapes_column_width=70))


if __name__ == '__main__':
    main()
