#!/usr/bin/env python
"""Print parameters and FLOPs of a config's model at an input size.

    python tools/get_flops.py CONFIG [--shape H W]

FLOPs are traced for the backbone and neck (the part that scales with the image); heads are
counted in parameters only (their cost depends on proposals and post-processing).
"""
from __future__ import annotations

import argparse
import sys

from devkit.analysis import model_complexity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, default=(800, 1344), metavar=('H', 'W'))
    args = parser.parse_args(argv)
    try:
        info = model_complexity(args.config, *args.shape)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'{args.config} ({info["host"]}), input {info["input"]}')
    print(f'  parameters: total {info["params_total"] / 1e6:.2f} M, backbone '
          f'{info["params_backbone"] / 1e6:.2f} M, neck {info["params_neck"] / 1e6:.2f} M')
    print(f'  FLOPs: backbone {info["gflops_backbone"]:.2f} G, neck {info["gflops_neck"]:.2f} G')
    return 0


if __name__ == '__main__':
    sys.exit(main())
