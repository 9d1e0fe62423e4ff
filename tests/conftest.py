"""Shared helpers: random weights that exercise every parameter, and the comparison metric.

``tools/`` goes on ``sys.path`` so tests import the tools' shared code as ``devkit``.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tools'))


def pytest_configure(config) -> None:
    """Under pytest, Triton's interpreter runs the fused GPU kernels
    (swinv2_backbone.kernels.fused) on CPU tensors: triton.jit reads this when it decorates
    them, at their first import, which comes later, with the test modules. A hook, not an
    import-time setting: tools/devkit/gpu_checks.py imports this file, and on a GPU the
    kernels must be compiled."""
    os.environ.setdefault('TRITON_INTERPRET', '1')


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter a random value of a sensible scale.

    The official init zeroes the res-post-norms (each block starts as the identity) and the
    q/v biases, which would hide mapping errors; here every tensor is random.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit('.', 1)[-1]
            if 'logit_scale' in leaf:  # temperatures between 5 and 40, below the clamp at 100
                p.copy_(torch.empty(p.shape).uniform_(math.log(5), math.log(40), generator=g))
            elif p.dim() > 1:
                fan_in = p[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=g))
            elif leaf == 'weight':  # norm scales
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:  # biases, q/v biases
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference over the reference's std."""
    assert ours.shape == ref.shape, f'{tuple(ours.shape)} != {tuple(ref.shape)}'
    return ((ours - ref).abs().max() / ref.std()).item()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
