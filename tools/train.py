#!/usr/bin/env python
"""Train a detector or segmenter from an mmdet or mmseg config (the host is the config's scope).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CHECKPOINT]] [--amp]
                                 [--cfg-options KEY=VALUE ...] [--launcher none|pytorch]

Several processes: ``tools/dist_train.sh CONFIG N [args]`` (torchrun; gloo on CPU).
"""
from __future__ import annotations

import _checkout  # noqa: F401  (devkit/ from the checkout: the demo configs import it)
import argparse
import sys

from mmengine.dist import get_dist_info

from swinv2_backbone.hosts.runner import add_runner_args, build_runner, finish_distributed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--resume', nargs='?', const=True, default=None,
                        help='resume from CHECKPOINT, or from the latest one in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (GPU)')
    add_runner_args(parser)
    args = parser.parse_args(argv)
    try:
        runner = build_runner(args.config, mode='train', work_dir=args.work_dir,
                              resume=args.resume, amp=args.amp, cfg_options=args.cfg_options,
                              launcher=args.launcher)
    except (FileNotFoundError, ImportError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    runner.train()
    rank, world_size = get_dist_info()
    print(f'rank {rank}/{world_size}: training finished at iteration {runner.iter}', flush=True)
    del runner  # its DDP model holds the process group: free both before leaving it
    finish_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
