#!/usr/bin/env python
"""The CUDA kernels one SwinV2-T step spends its time in (torch.profiler).

    python -m devkit.profile_step [--mode training|inference] [--amp bf16|fp16]
        [--size 1024 1024] [--batch 2] [--unfused] [--device cuda]

Prints the 30 kernels with the most GPU time over 3 profiled steps (after 3 warm-up steps).
A training step is a forward and a backward; an inference step a forward under ``no_grad``.
``--unfused`` turns off the fused Triton kernels (``Request.fused``) for an A/B. ``--device cpu``
(CPU time, a rehearsal of tools/gpu_check.sh) runs the same steps without a GPU.
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from swinv2_backbone.apps.extract import AMP_DTYPES
from swinv2_backbone.model.backbone import SwinV2Backbone
from swinv2_backbone.runtime.execution import Request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--mode', choices=['training', 'inference'], default='training')
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES), default='bf16')
    parser.add_argument('--size', type=int, nargs=2, default=(1024, 1024))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--execution', default='auto')
    parser.add_argument('--unfused', action='store_true')
    parser.add_argument('--device', default='cuda')
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    dtype = AMP_DTYPES[args.amp]
    execution = Request(args.execution, fused=False) if args.unfused else args.execution
    training = args.mode == 'training'
    model = SwinV2Backbone('tiny', window_size=8, out_norm=False, drop_path_rate=0.0,
                           execution=execution).to(device).train(training)
    x = torch.randn(args.batch, 3, *args.size, device=device)
    sync = torch.cuda.synchronize if cuda else lambda: None

    def step():
        with torch.autocast(device.type, dtype=dtype), torch.set_grad_enabled(training):
            outs = model(x)
        if training:
            sum(o.float().mean() for o in outs).backward()
            model.zero_grad(set_to_none=True)
    for _ in range(3):
        step()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            step()
        sync()
    print(prof.key_averages().table(sort_by=f'{device.type}_time_total', row_limit=30,
                                    max_name_column_width=60))


if __name__ == '__main__':
    main()
