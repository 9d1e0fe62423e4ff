"""Windows: the stage's gathers against pad/roll/partition, window shrinking, CPB tables,
``set_window_size``, and the bounded per-shape caches."""
from __future__ import annotations

import pytest
import torch

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.runtime.execution import Execution, decide

from devkit.testing import randomize_

SMALL = dict(arch=dict(embed_dim=32, depths=(1, 2, 1, 2), num_heads=(1, 2, 4, 8)),
             window_size=4, drop_path_rate=0.0)
REFERENCE = Execution('reference')


def small(**kw) -> SwinV2Backbone:
    return randomize_(SwinV2Backbone(**{**SMALL, **kw})).eval()


def _reference_block(blk, x, window, shift, mask):
    """The reference code's block on a (B, H, W, C) map: zero-pad, roll, partition, attend,
    reverse, roll back, crop, then the two post-norm residuals."""
    from swinv2_backbone.ops import pad_to_multiple, window_partition, window_reverse
    H, W = x.shape[1:3]
    y = pad_to_multiple(x, window)
    Hp, Wp = y.shape[1:3]
    y = torch.roll(y, (-shift, -shift), (1, 2))
    y = blk.attn(window_partition(y, window), window, mask if shift else None, REFERENCE)
    y = torch.roll(window_reverse(y, window, Hp, Wp), (shift, shift), (1, 2))[:, :H, :W]
    x = x + blk.norm1(y)
    return x + blk.norm2(blk.mlp(x))


@pytest.mark.parametrize('path', ['cpu', 'batched'])
@pytest.mark.parametrize('grad', [False, True])
def test_stage_gathers_match_pad_roll_partition(grad, path):
    """A 9x9 map with window 4 pads to 12x12 and only then rolls, so zero padding ends up
    between the rolled rows (as the references pad). The stage's single gathers between
    window orders (plain, shifted, plain again, back to the map) must give exactly that, with
    and without autograd (in-place chunked inference vs the training path); in training
    with the same gradients (the gathers' backward gathers back, zeroing the padding)."""
    from swinv2_backbone.ops import shift_attn_mask
    model = small(arch=dict(SMALL['arch'], depths=(1, 3, 1, 2)))
    stage = model.stages[1]  # plain, shifted, plain block, 2 heads
    stage.downsample = None
    x = torch.randn(2, 9, 9, 64, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        got = stage(x, decide(path, x, stage.parameters()))
        want = x
        for blk, shift in zip(stage.blocks, (0, 2, 0)):
            want = _reference_block(blk, want, 4, shift, shift_attn_mask(12, 12, 4, 2))
    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-5, atol=1e-5)
    if grad:
        weights = torch.randn_like(want)
        grads = [torch.autograd.grad((y * weights).sum(), [x, *stage.parameters()])
                 for y in (got, want)]
        for g, w in zip(*grads):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * w.abs().max())


def test_shape_caches_are_bounded():
    from swinv2_backbone.model import blocks
    model = small()
    with torch.no_grad():
        for w in range(40, 40 + 4 * (blocks.SHAPE_CACHE_SIZE + 3), 4):
            model(torch.randn(1, 3, 64, w))
    for stage in model.stages:
        assert len(stage._layouts) <= blocks.SHAPE_CACHE_SIZE


def test_small_map_shrinks_window_and_drops_shift():
    from swinv2_backbone.ops import effective_window
    assert effective_window(5, 9, 8, 4) == (5, 0)
    assert effective_window(9, 9, 8, 4) == (8, 4)
    assert effective_window(8, 30, 8, 4) == (8, 0)


def test_position_tables_are_not_in_the_state_dict():
    keys = SwinV2Backbone(**SMALL).state_dict().keys()
    assert not [k for k in keys if 'relative' in k or 'mask' in k or 'k_bias' in k]


def test_set_window_size_equals_building_at_that_window_with_same_weights():
    src = small(window_size=4, pretrained_window_sizes=(4, 4, 4, 4))
    built = SwinV2Backbone(**{**SMALL, 'window_size': 8, 'pretrained_window_sizes': (4,) * 4})
    built.load_state_dict(src.state_dict())
    built.eval()
    src.set_window_size(8)
    assert src.window_sizes == (8, 8, 8, 8)
    assert src.stages[0].blocks[0].attn.relative_coords_table.shape == (15, 15, 2)
    x = torch.randn(1, 3, 130, 150)
    with torch.no_grad():
        for a, b in zip(src(x), built(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_set_window_size_keeps_the_normalisation_a_model_was_built_with():
    """Pretrained window 0 normalises the CPB coordinates by the window the stage was built at;
    set_window_size keeps that, so building at 4 and calling set_window_size(8) equals
    building at 8 with pretrained windows 4 and the same weights (it differed by 0.42)."""
    src = small(window_size=4)
    built = SwinV2Backbone(**{**SMALL, 'window_size': 8, 'pretrained_window_sizes': (4,) * 4})
    built.load_state_dict(src.state_dict())
    built.eval()
    src.set_window_size(8)
    x = torch.randn(1, 3, 130, 150)
    with torch.no_grad():
        for a, b in zip(src(x), built(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_window_change_changes_features_but_not_weights():
    model = small(pretrained_window_sizes=(4, 4, 4, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        a = model(x)
        model.set_window_size((8, 8, 6, 4))
        b = model(x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not torch.allclose(a[0], b[0])


def test_cpb_coordinates_normalised_by_pretrained_window():
    from swinv2_backbone.ops import relative_coords_table
    t8 = relative_coords_table(8)
    t16 = relative_coords_table(16, pretrained_window=8)
    # offset 7 at window 8 normalises to 1 -> log2(9)/3; at window 16 pretrained at 8 the same
    assert t8[-1, -1, 0].item() == pytest.approx(1.0566, abs=1e-4)
    assert t16[15 + 7, 0, 0].item() == pytest.approx(t8[-1, 0, 0].item())
    assert t16.abs().max() > t8.abs().max()  # larger offsets extrapolate beyond the table
    assert torch.equal(relative_coords_table(1), torch.zeros(1, 1, 2))


def test_set_window_size_rejects_bad_windows():
    with pytest.raises(ValueError, match='must be positive'):
        small().set_window_size(-2)
