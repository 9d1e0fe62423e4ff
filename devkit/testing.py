"""Weights and error measures the tests, the GPU checks and the benchmarks share.

- :func:`randomize_`: every parameter random at a sensible scale (the tests: nothing a mapping
  error could hide behind);
- :func:`trained_biases_`: the biases random initialisation leaves at zero, filled as trained
  weights have them (the benchmarks: no subnormal floats);
- :func:`rel_err`: the largest difference over the reference's std, of one tensor;
  :func:`rel_errs`: the largest difference over the reference's largest value, for each of a
  dict of tensors (outputs and gradients by name), and :func:`max_rel_err`: the largest of
  those;
- :data:`NOT_INTERPRETED`: why the fused kernels' tests skip where
  :data:`~swinv2_backbone.hardware.INTERPRETED` is False.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ['NOT_INTERPRETED', 'max_rel_err', 'randomize_', 'rel_err', 'rel_errs',
           'trained_biases_']

NOT_INTERPRETED = ("the fused kernels' tests run in Triton's interpreter: Triton >= 3.0 with "
                   'TRITON_INTERPRET=1, whose stores arrive (not 3.1 under numpy 2)')


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
                value = torch.empty(p.shape).uniform_(math.log(5), math.log(40), generator=g)
            elif p.dim() > 1:
                bound = 1.0 / math.sqrt(p[0].numel())
                value = torch.empty(p.shape).uniform_(-bound, bound, generator=g)
            elif leaf == 'weight':  # norm scales
                value = 1 + 0.2 * torch.randn(p.shape, generator=g)
            else:  # biases, q/v biases
                value = 0.2 * torch.randn(p.shape, generator=g)
            p.copy_(value)
    return model


def trained_biases_(model: nn.Module) -> nn.Module:
    """Fill the biases random initialisation leaves at zero with small random values (std
    0.02), as trained weights have them. With a zero v bias, the zero-padded tokens of a
    shifted, padded window attend only to zero values and masked ones (weight e^-100), so the
    attention outputs there are subnormal floats. No trained model computes those, and on an
    Intel Xeon they slowed the GEMMs reading them about tenfold (BENCHMARKS.md): timm's and
    ours at 800x1344, not HF's (whose padded tokens came out exactly zero)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1 and not p.is_meta and not p.any():
                p.normal_(std=0.02)
    return model


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference over the reference's std."""
    assert ours.shape == ref.shape, f'{tuple(ours.shape)} != {tuple(ref.shape)}'
    return ((ours - ref).abs().max() / ref.std()).item()


def rel_errs(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> dict[str, float]:
    """For each name of ``want``: max abs difference over the reference's largest magnitude."""
    return {n: ((got[n] - w).abs().max() / w.abs().max().clamp_min(1e-12)).item()
            for n, w in want.items()}


def max_rel_err(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> float:
    """The largest of :func:`rel_errs`."""
    return max(rel_errs(want, got).values())
