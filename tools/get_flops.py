#!/usr/bin/env python
"""Print parameters and FLOPs of a config's model at an input size.

    python tools/get_flops.py CONFIG [--shape H W]

The whole model is traced as it predicts one image (backbone, neck and heads; a two-stage
detector's heads with the proposal count of its test_cfg), and the FLOPs are given in total
and per part. The default size is the one a config is usually measured at: a segmentation
config's crop (ADE20K: 512x512), a detection config's test resize, padded (COCO: 800x1344).
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout)
import argparse
import sys

from devkit.analysis import model_complexity


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="default: the config's crop or test resize")
    args = parser.parse_args(argv)
    try:
        info = model_complexity(args.config, *(args.shape or (None, None)))
    except (FileNotFoundError, ImportError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'{args.config} ({info["host"]}), input {info["input"]}')
    print(f'  parameters: total {info["params_total"] / 1e6:.2f} M, '
          + ', '.join(f'{k} {v / 1e6:.2f} M' for k, v in info['params'].items()))
    print(f'  FLOPs: total {info["gflops_total"]:.2f} G, '
          + ', '.join(f'{k} {v:.2f} G' for k, v in info['gflops'].items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
