"""CUDA graphs (``cuda_graph=True``) on a machine without a GPU: when the decision says to
capture, what a capture must not cache outside the graph, and what copies of the module carry.

The graphs themselves (equal to eager in outputs and every gradient, across shapes, weight
updates, accumulation, bf16 autocast, drop path, with_cp) need a GPU:
``tests/test_gpu.py`` check 5, run on a lent H100 (BENCHMARKS.md).
"""
from __future__ import annotations

import copy
import pickle
from dataclasses import replace

import torch

from swinv2_backbone import SwinV2Backbone
from swinv2_backbone.runtime.execution import Execution, decide
from swinv2_backbone.runtime.graphs import STOP_AFTER_EVICTIONS, CudaGraphs

from devkit.testing import randomize_

SMALL = dict(arch=dict(embed_dim=16, depths=(1, 2), num_heads=(1, 2)), window_size=4,
             drop_path_rate=0.0)


def small(**kw) -> SwinV2Backbone:
    torch.manual_seed(0)
    return randomize_(SwinV2Backbone(**{**SMALL, **kw})).eval()


def test_graphs_are_asked_for_only_on_cuda_and_elsewhere_the_forward_is_eager():
    model = small(cuda_graph=True)
    for device in ('cpu', 'meta'):
        x = torch.randn(1, 3, 8, 8, device=device)
        assert not decide('auto', x, model.parameters(), cuda_graph=True).cuda_graph
        assert decide('auto', x, model.parameters()).cuda_graph is False
    x = torch.randn(1, 3, 37, 41)
    for a, b in zip(model(x), small()(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(model._graphs) == 0


def test_a_captured_forward_caches_no_position_bias():
    """A replay would not look at the cache, so a capture must compute the bias in the graph:
    eval forwards fill the cache, captured ones do not."""
    attn = small().stages[0].blocks[0].attn
    with torch.no_grad():
        attn.position_bias(4, Execution('batched', captured=True))
        assert attn._terms_cache is None
        attn.position_bias(4, Execution('batched'))
        assert attn._terms_cache is not None


def test_shrunk_window_tables_built_in_inference_mode_serve_training():
    """The tables of windows shrunk to small maps are built once (a capture cannot copy from
    the host); made first under inference_mode they must still be savable for backward."""
    model = small()
    x = torch.randn(1, 3, 12, 20)  # 3x5 map: the window shrinks to 3
    with torch.inference_mode():
        want = model(x)
    assert model.stages[0].blocks[0].attn._shrunk_tables
    model.train()
    outs = model(x)
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in model.stages[0].parameters())
    for a, b in zip(model.eval()(x), want):
        torch.testing.assert_close(a, b)


def test_copies_and_pickles_start_without_graphs():
    model = small(cuda_graph=True)
    model._graphs._captured['sentinel'] = object()  # what a capture would leave
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert isinstance(twin._graphs, CudaGraphs) and len(twin._graphs) == 0
        assert twin.cuda_graph
    assert len(model._graphs) == 1
    model.float()  # .to / .half / .cuda may move the weights the graphs read
    assert len(model._graphs) == 0
    model._graphs._captured['sentinel'] = object()
    model.set_window_size(8)
    assert len(model._graphs) == 0


def test_the_captured_execution_is_the_decided_one_without_graphs():
    from swinv2_backbone.runtime.graphs import _capturing
    decided = Execution('batched', grad=True, amp=torch.bfloat16, cuda_graph=True)
    assert _capturing(decided) == replace(decided, cuda_graph=False, captured=True)


def test_a_signature_seen_once_runs_eagerly_and_captures_nothing():
    """One-off shapes (validation images of varying sizes) pay no capture: a signature is
    captured the second time it is seen (that needs a GPU: test_gpu.py)."""
    model = small(cuda_graph=True)
    graphs, x = CudaGraphs(), torch.randn(1, 3, 21, 19)
    execution = Execution('batched', cuda_graph=True)
    with torch.no_grad():
        outs = graphs(model._forward, x, execution, list(model.parameters()), model.training,
                      keep=list)
        want = small()(x)
    for a, b in zip(outs, want):
        torch.testing.assert_close(a, b)
    assert len(graphs) == 0 and len(graphs._seen) == 1
    graphs.clear()
    assert len(graphs._seen) == 0


def test_after_repeated_evictions_new_signatures_run_eagerly():
    """Varying shapes (multi-scale training) would capture over and over: after
    STOP_AFTER_EVICTIONS evictions a signature seen again runs eagerly instead (no capture is
    attempted, which on this CPU would raise)."""
    model = small(cuda_graph=True)
    graphs, x = CudaGraphs(), torch.randn(1, 3, 21, 19)
    graphs._evictions = STOP_AFTER_EVICTIONS
    execution = Execution('batched', cuda_graph=True)
    with torch.no_grad():
        for _ in range(3):
            outs = graphs(model._forward, x, execution, list(model.parameters()),
                          model.training, keep=list)
    assert len(graphs) == 0
    assert outs[0].shape == (1, 16, 6, 5)
