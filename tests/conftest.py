"""What every test shares: a fixed seed. The helpers (random weights, error measures) are in
:mod:`swinv2_backbone.devkit.testing`, which the tools import too."""
from __future__ import annotations

import os

import pytest
import torch


def pytest_configure(config) -> None:
    """Under pytest, Triton's interpreter runs the fused GPU kernels
    (swinv2_backbone.kernels.fused) on CPU tensors: triton.jit reads this when it decorates
    them, at their first import, which comes later, with the test modules. A hook, not an
    import-time setting, and not when only the GPU tests are selected (``-m cuda``): on a GPU
    the kernels must be compiled."""
    if config.getoption('markexpr', '') != 'cuda':
        os.environ.setdefault('TRITON_INTERPRET', '1')


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
