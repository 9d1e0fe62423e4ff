"""Our SwinV2 matches timm, HF transformers and mmpretrain, with identical random weights.

Each reference model is randomised in full, its state dict mapped to our layout by the
package's own ``from_*`` function, and stage outputs compared (max abs diff / reference std).
Sizes are ones each reference handles the same way as the official code:
- timm rolls before padding (timm#2438 on GitHub), so it is compared at window-multiple sizes only;
- HF decides each stage's window at construction from ``image_size`` (by the height alone), so it
  is built for the test size;
- mmpretrain asserts when a map is smaller than its window, so every map is >= the window.
"""
from __future__ import annotations

import pytest
import torch

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.weights.checkpoints import from_hf, from_mmpretrain, from_timm

from devkit.testing import randomize_, rel_err

TOL = 1e-4
TINY = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
NAMES = ('stage1', 'stage2', 'stage3', 'stage4')

# (window per stage, pretrained windows): SwinV2-T w8, w16, and the 12-to-24 fine-tune setting
W8 = ((8, 8, 8, 8), (0, 0, 0, 0))
W16 = ((16, 16, 16, 16), (0, 0, 0, 0))
W24 = ((24, 24, 24, 12), (12, 12, 12, 6))


def ours_from(state_dict, windows, pretrained, **kw):
    model = SwinV2Backbone('tiny', window_size=windows, pretrained_window_sizes=pretrained,
                           drop_path_rate=0.0, **kw)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    assert not missing, f'mapping left our parameters unset: {missing[:5]}'
    return model.eval(), unexpected


def compare(ours, ref_feats, x):
    with torch.no_grad():
        feats = ours(x)
    assert len(feats) == len(ref_feats)
    errs = [rel_err(a, b) for a, b in zip(feats, ref_feats)]
    print('max |diff| / std per stage:', ['%.2e' % e for e in errs])
    assert max(errs) < TOL, errs
    return errs


@pytest.mark.parametrize('setting,size', [
    (W8, (256, 256)), (W8, (384, 512)), (W16, (512, 512)), (W16, (256, 256)),
    (W24, (384, 384))])
def test_matches_timm(setting, size):
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    windows, pretrained = setting
    # timm's window for a stage is min(window, map) per side; with square maps that is ours
    ref = SwinTransformerV2(img_size=size, window_size=list(windows),
                            pretrained_window_sizes=pretrained, num_classes=0,
                            drop_path_rate=0.0, **TINY)
    randomize_(ref).eval()
    sd, dropped = from_timm(ref.state_dict())
    ours, unexpected = ours_from(sd, windows, pretrained, out_norm=False)
    assert unexpected == ['out_norms.stage4.weight', 'out_norms.stage4.bias']
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref_feats = ref.forward_intermediates(x, intermediates_only=True)
    compare(ours, ref_feats, x)


def test_timm_final_norm_maps_to_last_output_norm():
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    ref = randomize_(SwinTransformerV2(img_size=256, window_size=8, num_classes=0,
                                       drop_path_rate=0.0, **TINY)).eval()
    sd, _ = from_timm(ref.state_dict())
    ours, unexpected = ours_from(sd, 8, (0, 0, 0, 0), out_features=['stage4'])
    assert not unexpected
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        ref_out = ref.forward_features(x).permute(0, 3, 1, 2)  # (B, H, W, C) with final norm
    compare(ours, [ref_out], x)


def _hf_config(size, windows, pretrained, **kw):
    from transformers import Swinv2Config
    # HF takes one window for all stages; the last stage's smaller window comes from shrinking
    return Swinv2Config(image_size=size, window_size=windows[0],
                        pretrained_window_sizes=list(pretrained), drop_path_rate=0.0,
                        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], **kw)


@pytest.mark.parametrize('setting,size', [
    (W8, (256, 256)), (W8, (300, 420)), (W16, (512, 512)), (W16, (552, 600)),
    (W24, (384, 384))])
def test_matches_hf_swinv2_backbone(setting, size):
    from transformers import Swinv2Backbone
    windows, pretrained = setting
    if size == (384, 384):
        windows = (24, 24, 24, 24)  # at 384 the last map is 12 and shrinks the window to it
    ref = Swinv2Backbone(_hf_config(size, windows, pretrained,
                                    out_features=['stem', *NAMES]))
    randomize_(ref).eval()
    sd, _ = from_hf(ref.state_dict())
    ours, unexpected = ours_from(sd, windows, pretrained, out_norm=False,
                                 out_features=['stem', *NAMES])
    assert not unexpected
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref_feats = ref(x).feature_maps
    compare(ours, ref_feats, x)


def test_matches_hf_swinv2_model_last_hidden_state_with_final_layernorm():
    from transformers import Swinv2Model
    ref = randomize_(Swinv2Model(_hf_config((256, 320), (8,) * 4, (0,) * 4))).eval()
    sd, dropped = from_hf(ref.state_dict())
    assert 'pooler' not in ''.join(sd)
    ours, unexpected = ours_from(sd, 8, (0, 0, 0, 0), out_features=['stage4'])
    assert not unexpected
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        seq = ref(x).last_hidden_state  # (B, h*w, C) after the final layernorm
    ref_out = seq.transpose(1, 2).reshape(1, -1, 8, 10)
    compare(ours, [ref_out], x)


@pytest.mark.parametrize('setting,size', [
    (W8, (256, 256)), (W8, (300, 420)), (W16, (512, 512)), (W16, (552, 600)),
    (W24, (384, 384)), (W24, (400, 500))])
def test_matches_mmpretrain(setting, size):
    from mmpretrain.models import SwinTransformerV2
    windows, pretrained = setting
    ref = SwinTransformerV2(arch='tiny', img_size=size, window_size=list(windows),
                            pretrained_window_sizes=list(pretrained), out_indices=(0, 1, 2, 3),
                            drop_path_rate=0.0, norm_cfg=None)
    randomize_(ref).eval()
    sd, _ = from_mmpretrain(ref.state_dict())
    ours, unexpected = ours_from(sd, windows, pretrained, out_norm=False)
    assert not unexpected
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref_feats = ref(x)
    compare(ours, ref_feats, x)


def test_matches_mmpretrain_output_norms_and_resized_abs_pos_embed():
    from mmpretrain.models import SwinTransformerV2
    ref = SwinTransformerV2(arch='tiny', img_size=256, window_size=8, use_abs_pos_embed=True,
                            out_indices=(0, 1, 2, 3), drop_path_rate=0.0)
    randomize_(ref).eval()
    sd, _ = from_mmpretrain(ref.state_dict())
    assert sd['absolute_pos_embed'].shape == (1, 96, 64, 64)
    ours, unexpected = ours_from(sd, 8, (0, 0, 0, 0), use_abs_pos_embed=True,
                                 pretrain_img_size=256)
    assert not unexpected
    x = torch.randn(1, 3, 320, 288)  # a different grid: the embedding is resized bicubically
    with torch.no_grad():
        ref_feats = ref(x)
    compare(ours, ref_feats, x)


def test_comparison_detects_a_small_error_in_one_position_bias():
    """The metric above is sensitive: a 1% change to one block's CPB MLP fails it."""
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    ref = randomize_(SwinTransformerV2(img_size=256, window_size=8, num_classes=0,
                                       drop_path_rate=0.0, **TINY)).eval()
    sd, _ = from_timm(ref.state_dict())
    key = 'stages.2.blocks.3.attn.cpb_mlp.2.weight'
    sd[key] = sd[key] * 1.01
    ours, _ = ours_from(sd, 8, (0, 0, 0, 0), out_norm=False)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        errs = [rel_err(a, b) for a, b in
                zip(ours(x), ref.forward_intermediates(x, intermediates_only=True))]
    assert errs[1] < TOL and errs[2] > TOL and errs[3] > TOL  # stage 2 is before the change


@pytest.mark.parametrize('drop_prob', [0.0, 0.3])
def test_drop_path_draws_as_timm_in_training_and_is_identity_in_eval(drop_prob):
    """Our DropPath (the core needs no mmcv) is timm's, which the official SwinV2 code uses:
    with the same seed the same samples are dropped and the kept ones scaled alike."""
    from timm.layers import DropPath as TimmDropPath

    from swinv2_backbone.model.blocks import DropPath
    x = torch.randn(64, 10, 8)
    ours, ref = DropPath(drop_prob), TimmDropPath(drop_prob)
    torch.manual_seed(3)
    got = ours(x)
    torch.manual_seed(3)
    assert torch.equal(got, ref(x))
    if drop_prob:
        dropped = (got == 0).flatten(1).all(1)
        assert 0 < int(dropped.sum()) < 64
        assert torch.allclose(got[~dropped], x[~dropped] / (1 - drop_prob))
    assert torch.equal(ours.eval()(x), x)


def test_the_readme_says_outputs_match_before_the_output_norms_hf_does_not_have():
    """The README's claim of equal stage outputs holds with out_norm=False (what these tests
    compare): HF's Swinv2Backbone has no per-stage norms, and ours adds them by default."""
    from pathlib import Path
    from transformers import Swinv2Backbone
    readme = (Path(__file__).resolve().parent.parent / 'README.md').read_text()
    intro = ' '.join(readme.split('\n## ')[0].split())
    assert 'with the same weights (before the output norms' in intro
    assert '`out_norm=False`' in intro
    ref = Swinv2Backbone(_hf_config((64, 64), (8,) * 4, (0,) * 4, out_features=list(NAMES)))
    stage_norms = [k for k in ref.state_dict() if 'norm' in k and not k.startswith(
        ('embeddings.', 'encoder.'))]
    assert not stage_norms, stage_norms
    assert list(SwinV2Backbone('tiny', window_size=8).out_norms) == list(NAMES)
