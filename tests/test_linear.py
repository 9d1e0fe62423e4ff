"""The oneDNN linear path (swinv2_backbone/linear.py) against F.linear."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from swinv2_backbone import linear as lin


@pytest.mark.skipif(not lin.ONEDNN, reason='this PyTorch has no oneDNN linear op')
@pytest.mark.parametrize('gelu', [False, True])
def test_onednn_linear_matches_f_linear_with_gradients(gelu):
    torch.manual_seed(0)
    x = torch.randn(2, 37, 24, requires_grad=True)  # 3-D input, odd row count
    w = (torch.randn(40, 24) * 0.2).requires_grad_()
    b = torch.randn(40, requires_grad=True)
    assert lin.onednn_applies(x, w)
    with torch.no_grad():
        torch.testing.assert_close(lin.linear(x, w, b, gelu=gelu),
                                   F.gelu(F.linear(x, w, b)) if gelu else F.linear(x, w, b),
                                   rtol=1e-5, atol=1e-5)
    grads = []
    for fn in (lin.linear, lambda *a, gelu: F.gelu(F.linear(*a)) if gelu else F.linear(*a)):
        out = fn(x, w, b, gelu=gelu)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([t.grad.clone() for t in (x, w, b)])
        for t in (x, w, b):
            t.grad = None
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_onednn_is_skipped_where_it_does_not_apply():
    x, w = torch.randn(3, 8), torch.randn(4, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not lin.onednn_applies(x, w)
        assert lin.linear(x, w).dtype == torch.bfloat16  # autocast's F.linear
    assert not lin.onednn_applies(x.double(), w.double())
    torch.testing.assert_close(lin.linear(x.double(), w.double()), F.linear(x, w).double(),
                               rtol=1e-5, atol=1e-5)
