#!/usr/bin/env python
"""The CUDA kernels one SwinV2-T training step spends its time in (torch.profiler).

    python tools/devkit/profile_step.py [--amp bf16|fp16] [--size 1024 1024] [--batch 2]

Prints the 30 kernels with the most GPU time over 3 profiled steps (after 3 warm-up steps).
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from swinv2_backbone import SwinV2Backbone


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--amp', choices=['bf16', 'fp16'], default='bf16')
    parser.add_argument('--size', type=int, nargs=2, default=(1024, 1024))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--execution', default='auto')
    args = parser.parse_args()
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16)[args.amp]
    model = SwinV2Backbone('tiny', window_size=8, out_norm=False, drop_path_rate=0.0,
                           execution=args.execution).cuda().train()
    x = torch.randn(args.batch, 3, *args.size, device='cuda')

    def step():
        with torch.autocast('cuda', dtype=dtype):
            outs = model(x)
        sum(o.float().mean() for o in outs).backward()
        model.zero_grad(set_to_none=True)
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by='cuda_time_total', row_limit=30,
                                    max_name_column_width=60))


if __name__ == '__main__':
    main()
