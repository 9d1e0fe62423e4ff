#!/usr/bin/env python
"""The CUDA kernels one SwinV2-T step spends its time in (torch.profiler).

    python -m swinv2_backbone.devkit.profile_step [--mode training|inference] [--amp bf16|fp16]
        [--size 1024 1024] [--batch 2] [--unfused]

Prints the 30 kernels with the most GPU time over 3 profiled steps (after 3 warm-up steps).
A training step is a forward and a backward; an inference step a forward under ``no_grad``.
``--unfused`` turns off the fused Triton kernels (``Request.fused``) for an A/B.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from ..apps.extract import AMP_DTYPES
from ..model.backbone import SwinV2Backbone
from ..runtime.execution import Request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--mode', choices=['training', 'inference'], default='training')
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES), default='bf16')
    parser.add_argument('--size', type=int, nargs=2, default=(1024, 1024))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--execution', default='auto')
    parser.add_argument('--unfused', action='store_true')
    args = parser.parse_args()
    dtype = AMP_DTYPES[args.amp]
    execution = Request(args.execution, fused=False) if args.unfused else args.execution
    training = args.mode == 'training'
    model = SwinV2Backbone('tiny', window_size=8, out_norm=False, drop_path_rate=0.0,
                           execution=execution).cuda().train(training)
    x = torch.randn(args.batch, 3, *args.size, device='cuda')

    def step():
        with torch.autocast('cuda', dtype=dtype), torch.set_grad_enabled(training):
            outs = model(x)
        if training:
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
