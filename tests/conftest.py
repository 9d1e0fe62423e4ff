"""What every test shares: a fixed seed. The helpers (random weights, error measures) are in
:mod:`devkit.testing`, which the tools import too."""
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


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``latest_only`` skip in the oldest environment (torch < 2.6): what they
    test is the same there (a host's model family, a tool's command line, another detector's
    export), and CI's two runs must stay under 40 minutes. Each file says what the oldest
    still runs in their place."""
    from swinv2_backbone.compat import TORCH_VERSION
    if TORCH_VERSION >= (2, 6):
        return
    skip = pytest.mark.skip(reason='run in the latest environment only (CI time)')
    for item in items:
        if 'latest_only' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
