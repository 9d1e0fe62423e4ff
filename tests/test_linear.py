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


@pytest.mark.skipif(not lin.ONEDNN, reason='this PyTorch has no oneDNN linear op')
@pytest.mark.parametrize('gelu', [False, True])
def test_bf16_inference_linear_is_a_bf16_gemm_on_the_rounded_operands(gelu):
    """Under bf16 autocast without autograd: bf16 output, equal to float32 arithmetic on the
    bf16-rounded input and weight (oneDNN accumulates in float32); the float32 bias is kept."""
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 37, 64), torch.randn(48, 64) * 0.2, torch.randn(48)
    want = F.linear(x.bfloat16().float(), w.bfloat16().float(), b)
    want = F.gelu(want) if gelu else want
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert lin.bf16_inference(x)
        got = lin.linear(x, w, b, gelu=gelu)
    assert got.dtype == torch.bfloat16
    # the output is rounded to bf16 once: relative error below 2^-8
    torch.testing.assert_close(got.float(), want, rtol=2 ** -8, atol=1e-3)
    assert not torch.equal(got.float(), F.linear(x, w, b))  # really computed in bf16
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not lin.bf16_inference(x.requires_grad_())  # autograd: autocast's F.linear
