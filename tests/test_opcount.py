"""On a GPU every op is a kernel launch: the batched path launches no more ops than timm, and
as many at detection sizes as at 512x512 (no Python loop over images or chunks). Counted on the
meta device, which takes the paths a CUDA device takes (devkit/opcount.py)."""
from __future__ import annotations

import pytest
from devkit.opcount import count_step_ops

from swinv2_backbone import SwinV2Backbone
from devkit.activations import FAKE_CUDA, NO_FAKE_CUDA

TINY = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))


def _ours():
    return SwinV2Backbone('tiny', window_size=8, out_norm=False, drop_path_rate=0.0)


def _timm(size):
    from timm.models.swin_transformer_v2 import SwinTransformerV2
    return SwinTransformerV2(img_size=size, window_size=8, num_classes=0, drop_path_rate=0.0,
                             **TINY)


@pytest.mark.parametrize('mode,share', [('inference', 0.5), ('training', 0.6)])
def test_swinv2_t_launches_fewer_ops_than_timm_and_as_many_at_any_size(mode, share):
    """SwinV2-T window 8, batch 2, as a GPU without Triton runs it: at 800x1344 at most
    ``share`` of timm's ops, the bounds (when written: inference 233 against 488,
    training 877 against 1,481); 512x512 and 800x1344 within 10% of each other."""
    ours = {size: count_step_ops(_ours, size, 2, mode).total
            for size in ((512, 512), (800, 1344))}
    timm = count_step_ops(lambda: _timm((800, 1344)), (800, 1344), 2, mode).total
    assert ours[800, 1344] <= share * timm, (ours, timm)
    assert abs(ours[800, 1344] - ours[512, 512]) <= 0.1 * ours[512, 512], ours


@pytest.mark.parametrize('mode,share', [('inference', 0.35), ('training', 0.55)])
def test_with_the_fused_triton_kernels_a_step_launches_at_most_0_55x_timms(mode, share):
    """As a GPU with Triton >= 3.0 runs it (the fused kernels counted a launch each; when
    written: inference 155, training 727 against timm's 488 and 1,481), one q/k/v kernel per
    block each way and in inference one residual kernel per norm."""
    from swinv2_backbone import hardware
    if not hardware.TRITON:
        pytest.skip('the fused kernels need Triton >= 3.0')
    counts = count_step_ops(_ours, (800, 1344), 2, mode, triton=True)
    timm = count_step_ops(lambda: _timm((800, 1344)), (800, 1344), 2, mode).total
    assert counts.total <= share * timm, (counts.total, timm)
    blocks = sum(TINY['depths'])
    launches = {name: n for name, n in counts.ops.items() if name.startswith('triton')}
    assert launches == ({'triton _qkv_heads_kernel': blocks,
                         'triton _add_layer_norm_kernel': 2 * blocks} if mode == 'inference'
                        else {'triton _qkv_heads_kernel': blocks,
                              'triton _qkv_heads_backward_kernel': blocks})


def test_the_counter_counts_sdpa_as_one_kernel_and_gradients_set_to_none():
    """What the meta device does as no GPU would (SDPA's math, or gradients added into those
    of the step before) counted only where asked for."""
    ours = {kw: count_step_ops(_ours, (128, 128), 1, 'training', sdpa=s, zero_grad=z).ops
            for kw, (s, z) in {'gpu': ('efficient', True), 'math': ('math', True),
                               'accumulate': ('efficient', False)}.items()}
    assert ours['gpu']['_scaled_dot_product_efficient_attention'] == sum(TINY['depths'])
    assert '_scaled_dot_product_efficient_attention' not in ours['math']
    assert ours['math']['bmm'] > 0 and 'bmm' not in ours['gpu']
    params = len(list(_ours().parameters()))
    assert ours['accumulate']['add_'] - ours['gpu'].get('add_', 0) >= params


def test_the_counter_counts_launches_not_views():
    import torch
    from devkit.opcount import OpCounter
    x = torch.randn(4, 6, device='meta')
    with OpCounter() as counter:
        y = x.view(2, 12).t()[1:].reshape(-1, 2)  # views only
        z = torch.empty_like(y)  # an allocation
        (x * 2).sum()  # two kernels
        x.t().reshape(-1)  # a transposed tensor flattened: a copy kernel
    assert dict(counter.ops) == {'mul': 1, 'sum': 1, 'clone': 1} and counter.total == 3
    assert z.shape == y.shape


@pytest.mark.skipif(not FAKE_CUDA, reason=NO_FAKE_CUDA)
def test_the_cuda_memory_estimate_sees_the_mlp_hidden_layers_with_cp_drops():
    """devkit/activations.py on fake CUDA tensors: under bf16 autocast, ``with_cp='mlp'``
    keeps less by exactly every block's bf16 hidden layer (tokens x 4C x 2 bytes)."""
    from functools import partial

    import torch
    from devkit.activations import cuda_saved_for_backward_mib
    arch = dict(embed_dim=16, depths=(1, 2), num_heads=(1, 2))

    def build(with_cp):
        return SwinV2Backbone(arch=arch, window_size=4, drop_path_rate=0.0, with_cp=with_cp)
    keep, mlp = (cuda_saved_for_backward_mib(partial(build, cp), (64, 96), 2, torch.bfloat16)
                 for cp in (False, 'mlp'))
    tokens = 2 * (16 * 24 * 16 * 1 + 8 * 12 * 32 * 2)  # images x sum(H x W x C x depth)
    assert (keep - mlp) * 2**20 == tokens * 4 * 2


def test_the_traffic_counter_charges_each_kernel_its_operands_and_outputs():
    import torch
    import torch.nn.functional as F
    from devkit.traffic import TrafficCounter
    x, w, b = (torch.randn(*s, device='meta') for s in ((4, 6), (3, 6), (3,)))
    with TrafficCounter() as counter:
        x.view(2, 12).t()  # views: nothing
        F.linear(x, w, b)  # addmm: reads x, w and b, writes 4 x 3
    assert dict(counter.bytes) == {'addmm': (24 + 18 + 3 + 12) * 4}


@pytest.mark.skipif(not FAKE_CUDA, reason=NO_FAKE_CUDA)
def test_the_traffic_estimate_charges_the_fused_kernels_what_they_read_and_write():
    """devkit/traffic.py on fake CUDA tensors under fp16 autocast, no padding: each residual
    ``x += norm(y)`` reads and writes the float32 stream and reads the fp16 branch; each
    ``qkv_heads`` reads the fp16 projection and writes as much. The unfused path runs the
    float32 q/k norms instead, and moves more in all."""
    from functools import partial

    import torch
    from devkit.traffic import cuda_inference_traffic
    from swinv2_backbone.runtime.execution import Request
    from swinv2_backbone import hardware
    if not hardware.TRITON:
        pytest.skip('the fused path needs Triton >= 3.0')
    arch = dict(embed_dim=16, depths=(1, 2), num_heads=(1, 2))

    def build(fuse):
        return SwinV2Backbone(arch=arch, window_size=4, drop_path_rate=0.0,
                              execution=Request('batched', fused=fuse))
    on, off = (cuda_inference_traffic(partial(build, f), (64, 96), 2, torch.float16).bytes
               for f in (None, False))
    # (tokens x C, blocks) of each stage: 2 images of 16 x 24 and 8 x 12 tokens
    stages = ((2 * 16 * 24 * 16, 1), (2 * 8 * 12 * 32, 2))
    assert on['fused add_layer_norm_'] == sum(2 * n * (4 + 4 + 2) * d for n, d in stages)
    assert on['fused qkv_heads'] == sum(2 * n * 3 * 2 * d for n, d in stages)
    assert 'linalg_vector_norm' not in on and 'linalg_vector_norm' in off
    assert not any(op.startswith('fused') for op in off)
    assert sum(on.values()) < sum(off.values())
