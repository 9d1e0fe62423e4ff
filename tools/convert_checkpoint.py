#!/usr/bin/env python
"""Convert a SwinV2 checkpoint (official, HF, timm, mmpretrain) to this package's layout.

    python tools/convert_checkpoint.py SRC DST [--from auto|official|hf|timm|mmpretrain]
                                       [--force] [--trust-file]

DST ending in ``.safetensors`` is written as safetensors, anything else with ``torch.save`` as
``{'state_dict': ..., 'meta': ...}``. The file is written to a temporary name and renamed, so an
interrupted conversion leaves DST as it was. An existing DST is kept unless ``--force``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swinv2_backbone.weights.checkpoints import FORMATS, convert_state_dict
from swinv2_backbone.weights.loading import read_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint file or HF model directory')
    parser.add_argument('dst', help='output file (.pth or .safetensors)')
    parser.add_argument('--from', dest='fmt', default='auto', choices=['auto', *FORMATS],
                        help='source layout (default: detected from the keys)')
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    parser.add_argument('--trust-file', action='store_true',
                        help='allow arbitrary pickled objects in SRC (only for files you trust)')
    args = parser.parse_args(argv)

    dst = Path(args.dst)
    if dst.exists() and not args.force:
        print(f'error: {dst} exists; pass --force to overwrite it', file=sys.stderr)
        return 1
    if not dst.parent.is_dir():
        print(f'error: output directory {dst.parent} does not exist', file=sys.stderr)
        return 1
    try:
        source = read_checkpoint(args.src, trust_file=args.trust_file)
        state_dict, dropped, fmt = convert_state_dict(source, args.fmt)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'{args.src}: {fmt} layout, {len(source)} tensors')
    merged = ' (query, key and value projections merged into qkv)' if fmt == 'hf' else ''
    print(f'mapped {len(source) - len(dropped)} tensors to {len(state_dict)} of the '
          f'swinv2_backbone layout{merged}')
    if dropped:
        print(f'dropped {len(dropped)} (heads, decoders, window-dependent buffers):')
        for key in dropped:
            print(f'  {key}')
    save_checkpoint(state_dict, dst, meta=dict(source=str(args.src), source_format=fmt))
    print(f'wrote {dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
