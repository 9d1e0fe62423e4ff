"""Every attention backend the plan can pick (execution.ATTENTION_BACKENDS) against the math
stated once (ops.reference_attention): outputs and, for backends that train, the gradient of
every input and parameter; plain and shifted windows with zero padding; float32 and bf16
autocast. A backend registered without an entry in EXECUTIONS fails the first test."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from swinv2_backbone.devkit.testing import NOT_INTERPRETED, randomize_

from swinv2_backbone import hardware
from swinv2_backbone.model.attention import WindowAttentionV2
from swinv2_backbone.runtime.execution import ATTENTION_BACKENDS, Execution
from swinv2_backbone.ops import reference_attention, shift_attn_mask, window_partition

# the decided forward each backend is checked under (small chunks: edges inside images)
EXECUTIONS = {
    'reference': Execution('reference', grad=True),
    'export': Execution('reference', exporting=True),
    'batched': Execution('batched', grad=True),
    'batched, fused': Execution('batched', grad=True, fused=True),
    'cpu': Execution('cpu', grad=True, train_chunk_tokens=48, chunk_logits=100),
    'cpu inference': Execution('cpu', chunk_logits=100),
}
WINDOW, HEADS, C = 4, 2, 16
# two 6 x 10 maps zero-padded to 8 x 12: 6 windows of 16 tokens each
H, W, HP, WP = 6, 10, 8, 12


def test_every_backend_is_checked_under_an_execution_that_picks_it():
    assert set(EXECUTIONS) == set(ATTENTION_BACKENDS)
    assert {name: e.attention_backend for name, e in EXECUTIONS.items()} == \
        {name: name for name in EXECUTIONS}


def _by_position(x, forward):
    """(B, L, C) tokens window by window to the n-th tokens of all windows, then the next n
    (``forward``), or back."""
    N = WINDOW * WINDOW
    shape = (len(x), -1, N, C) if forward else (len(x), N, -1, C)
    return x.reshape(shape).transpose(1, 2).reshape(x.shape)


def _run(attn, tokens, mask, execution, backend, amp, grad, g):
    """Output (B, L, C) and, with ``grad``, the gradients of (output * g).sum() with respect to
    the tokens and every parameter of ``attn`` the attention uses."""
    x = tokens.clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad), \
            torch.autocast('cpu', dtype=amp or torch.bfloat16, enabled=amp is not None):
        temperature, qkv_bias = attn.temperature(), attn.qkv_bias()
        pos_bias = attn.position_bias(WINDOW, execution)
        if backend is None:  # the reference, called as the official code would
            N = WINDOW * WINDOW
            rows = None if mask is None else mask.repeat(len(x), 1, 1)
            out = reference_attention(x.reshape(-1, N, C), attn.qkv.weight, qkv_bias,
                                      temperature, pos_bias, rows, HEADS)
            residual = x
        else:  # shifted windows' tokens in the order the plan gives them (the stage's)
            by_position = mask is not None and execution.shifted_tokens == 'positions'
            out, residual = backend.run(
                execution, _by_position(x, True) if by_position else x, attn.qkv.weight,
                qkv_bias, temperature, pos_bias, mask, HEADS, WINDOW, None)
            out = _by_position(out.reshape(x.shape), False) if by_position else out
            residual = _by_position(residual, False) if by_position else residual
    # the residual's input: x itself, or a view whose gradient backward adds into x's
    assert torch.equal(residual, x)
    out = out.reshape(tokens.shape).float()
    if not grad:
        return out, []
    params = [x, attn.qkv.weight, attn.q_bias, attn.v_bias, attn.logit_scale,
              *attn.cpb_mlp.parameters()]
    loss = (out * g).sum() + (residual * g.flip(0)).sum()  # as a block adds the two
    return out, [t.float() for t in torch.autograd.grad(loss, params)]


@pytest.mark.parametrize('amp', [None, torch.bfloat16], ids=['fp32', 'bf16'])
@pytest.mark.parametrize('shifted', [False, True], ids=['plain', 'shifted'])
@pytest.mark.parametrize('name', list(ATTENTION_BACKENDS))
def test_each_backend_equals_the_reference(name, shifted, amp):
    if name == 'batched, fused' and not hardware.INTERPRETED:
        pytest.skip(NOT_INTERPRETED)
    backend = ATTENTION_BACKENDS[name]
    execution = replace(EXECUTIONS[name], amp=amp, bf16_inference=name == 'cpu inference'
                        and amp == torch.bfloat16 and hardware.ONEDNN_BF16)
    attn = randomize_(WindowAttentionV2(C, HEADS, WINDOW, 0, True, 0.0, 0.0))
    g = torch.Generator().manual_seed(1)
    maps = torch.zeros(2, HP, WP, C)
    maps[:, :H, :W] = torch.randn(2, H, W, C, generator=g)
    tokens = window_partition(maps, WINDOW).reshape(2, -1, C)  # (B, nW * N, C), window order
    mask = shift_attn_mask(HP, WP, WINDOW, WINDOW // 2) if shifted else None
    weights = torch.randn(tokens.shape, generator=g)
    got = _run(attn, tokens, mask, execution, backend, amp, backend.trains, weights)
    want = _run(attn, tokens, mask, EXECUTIONS['reference'], None, None, backend.trains, weights)
    assert len(got[1]) == len(want[1]) == (8 if backend.trains else 0)
    if amp is None:  # float32: rounding only
        for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
            err = (a - b).abs().max() / b.std()
            assert err <= 1e-4, (name, err.item())
        return
    # under autocast each backend rounds its own way: as close to float32 as the reference
    # math is under the same autocast (max and rms over the std), within a factor of 2; the
    # cpu backend's backward recomputes the softmax in bf16 where autocast runs the
    # reference's in float32, and its CPB gradients came out 2.2x further (measured)
    factor = 3.0 if name == 'cpu' else 2.0
    ref = _run(attn, tokens, mask, replace(EXECUTIONS['reference'], amp=amp), None, amp,
               backend.trains, weights)
    for i, (a, r, b) in enumerate(zip([got[0], *got[1]], [ref[0], *ref[1]],
                                      [want[0], *want[1]])):
        assert torch.isfinite(a).all(), (name, i)
        err, ref_err = ((t - b).abs() / b.std() for t in (a, r))
        for stat in (torch.amax, lambda e: e.pow(2).mean().sqrt()):
            assert stat(err) <= factor * stat(ref_err) + 1e-3, \
                (name, i, stat(err).item(), stat(ref_err).item())
