#!/usr/bin/env python
"""Extract SwinV2 feature pyramids from images (resumable; .npz or .safetensors per image).

    python tools/extract_features.py IMAGES... --out DIR
        [--config CFG | --arch tiny|small|base|large|auto] [--checkpoint PATH]
        [--window W] [--pretrained-windows W1 W2 W3 W4]
        [--stages stem stage1 stage2 stage3 stage4] [--resize keep|short:N|fixed:HxW]
        [--format npz|safetensors] [--fp16] [--batch-size N] [--vis] [--single-file PATH]
        [--device cpu|cuda] [--amp bf16|fp16] [--cuda-graph]

Several processes (GPUs, or nodes): ``torchrun --nproc_per_node N tools/extract_features.py
...`` shares the images: rank 0 plans batches of equal-size images, each process runs every
N-th batch on its own GPU (CPU: gloo) and writes its images' files; rank 0 writes index.json.
The files and values are those of one process.

The process keeps the CPU memory that tensors free for the next batch instead of returning it to
the system (devkit/allocator.py): fewer page faults, faster CPU forwards.

IMAGES are files, folders (searched recursively) or glob patterns. A rerun skips images whose
output exists; unreadable images are reported and skipped. Inputs are normalised with the
ImageNet mean/std the released checkpoints were trained with.
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout)
import argparse
import os
import sys

import torch

from swinv2_backbone.apps.extract import (AMP_DTYPES, add_backbone_arguments,
                                          backbone_from_arguments, extract_features,
                                          find_images)
from swinv2_backbone.hosts.runner import finish_distributed
from devkit.allocator import keep_freed_memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('images', nargs='+', metavar='IMAGES',
                        help='image files, folders (searched recursively) or glob patterns '
                             "(quoted: 'imgs/*.jpg'); a folder or pattern with no image is an "
                             'error')
    parser.add_argument('--out', required=True, help='output directory')
    add_backbone_arguments(parser)
    parser.add_argument('--resize', default='keep',
                        help="'keep' (each image at its size, default), 'short:N' (shorter "
                             "side N, aspect kept) or 'fixed:HxW'")
    parser.add_argument('--format', default='npz', choices=['npz', 'safetensors'])
    parser.add_argument('--fp16', action='store_true', help='store float16')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--vis', action='store_true', help='a PCA picture per image')
    parser.add_argument('--single-file', help='write every image into this one file instead')
    parser.add_argument('--device')
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES),
                        help='run under autocast to this dtype')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='replay each input shape from a CUDA graph (GPU)')
    args = parser.parse_args(argv)
    keep_freed_memory()  # glibc only; elsewhere the allocator stays as it is
    rank, world, device = start_processes(args.device)
    try:
        images = find_images(args.images)
        model = backbone_from_arguments(args, device)
        model.cuda_graph = args.cuda_graph
        summary = extract_features(model, images, args.out, args.format, args.resize,
                                   args.fp16, args.batch_size, args.vis, args.single_file,
                                   amp=AMP_DTYPES.get(args.amp), shard=(rank, world))
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    finally:
        finish_distributed()  # every rank done, then the group left (gloo on torch 2.1 hangs
        # at exit when one rank leaves while another still writes)
    if rank == 0:
        print(summary.table())
    return 1 if summary.failed and not summary.done else 0


def start_processes(device: str | None) -> tuple[int, int, str | None]:
    """(rank, world size, device): under torchrun, joins the process group (NCCL and this
    process's GPU where there are GPUs, else gloo on the CPU)."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world == 1:
        return 0, 1, device
    cuda = torch.cuda.is_available() and device != 'cpu'
    if cuda:
        torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
    torch.distributed.init_process_group('nccl' if cuda else 'gloo')
    return torch.distributed.get_rank(), world, 'cuda' if cuda else 'cpu'


if __name__ == '__main__':
    sys.exit(main())
