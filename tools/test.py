#!/usr/bin/env python
"""Evaluate a checkpoint with the config's test dataloader and metric (mmdet or mmseg).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options KEY=VALUE ...]
                                           [--launcher none|pytorch]
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout: the demo configs import it)
import argparse
import sys

from swinv2_backbone.hosts.runner import add_runner_args, build_runner, finish_distributed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    add_runner_args(parser)
    args = parser.parse_args(argv)
    try:
        runner = build_runner(args.config, mode='test', work_dir=args.work_dir,
                              checkpoint=args.checkpoint, cfg_options=args.cfg_options,
                              launcher=args.launcher)
    except (FileNotFoundError, ImportError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    metrics = runner.test()
    print({k: round(float(v), 4) for k, v in metrics.items()})
    del runner  # its DDP model holds the process group: free both before leaving it
    finish_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
