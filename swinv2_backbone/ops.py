"""Pure tensor helpers: window partition, padding, shift masks, the CPB coordinate tables,
stochastic depth. The attention math itself is :mod:`swinv2_backbone.kernels.reference`.

Nothing here holds state; modules call these and cache what they return.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    'MASK_VALUE',
    'window_partition', 'window_reverse', 'pad_to_multiple', 'shift_attn_mask',
    'relative_coords_table', 'relative_position_index', 'effective_window', 'window_layout',
    'drop_path', 'select_tokens',
    'is_static', 'size_min', 'size_max', 'ceil_div', 'size_tensor', 'window_order',
    'adaptive_avg_pool2d',
]


# What the shift mask adds to the logits of tokens from regions that were not adjacent (the
# official value; kernels/reference.py states the attention it enters).
MASK_VALUE = -100.0


# ---------------------------------------------------------------- sizes that may be symbolic
# While a graph is recorded for another runtime, a tensor's size is a SymInt (torch.export, the
# dynamo ONNX exporter) or a 0-dim tensor (the TorchScript tracer). The helpers below compute
# with either as with an int, so the recorded graph derives windows, padding and masks from the
# input's shape instead of freezing the example's values.
Size = int | torch.SymInt | torch.Tensor


def is_static(*sizes) -> bool:
    """Whether every size is a plain int (not recorded into a graph)."""
    return all(isinstance(s, int) for s in sizes)


def size_min(a: Size, b: Size) -> Size:
    """``min(a, b)`` of sizes, recorded as an op where one is symbolic."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.minimum(size_tensor(a), size_tensor(b))
    # plain ints by Python: torch.compile of torch 2.5-2.8 cannot trace sym_min returning one
    return min(a, b) if is_static(a, b) else torch.sym_min(a, b)


def size_max(a: Size, b: Size) -> Size:
    """``max(a, b)`` of sizes, recorded as an op where one is symbolic."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.maximum(size_tensor(a), size_tensor(b))
    return max(a, b) if is_static(a, b) else torch.sym_max(a, b)


def size_tensor(n: Size, device: torch.device | None = None,
                dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """A size as a 0-dim tensor, for arithmetic with index tensors: the ONNX exporters record
    tensor-tensor ops from symbolic sizes, where some scalar forms (``%``, ``//``) they do not."""
    if isinstance(n, torch.Tensor):
        return n.to(device=device, dtype=dtype)
    return torch.scalar_tensor(n, dtype=dtype, device=device)


def ceil_div(a: Size, b: Size) -> Size:
    """``ceil(a / b)`` of positive sizes."""
    return (a + b - 1) // b


def adaptive_avg_pool2d(x: torch.Tensor, output_size: int | tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` from plain ops whose bins come from the input's shape.

    Bin ``i`` of ``out`` along a side of ``n`` covers ``[floor(i n / out), ceil((i + 1) n / out))``,
    as in PyTorch, also where ``n < out`` (bins overlap). Each side is averaged separately:
    differences of a cumulative sum gathered at the bin edges. The ONNX exporters record this
    for any input size, where ``F.adaptive_avg_pool2d`` is exported only for the example's
    (UperNet's and PSPNet's pyramid pooling, through mmdeploy).
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    if out_h is None or out_w is None:
        raise ValueError(f'output_size {output_size!r}: None (keep the input size) is not '
                         'supported')
    y = _adaptive_mean(_adaptive_mean(x.float(), 2, out_h), 3, out_w)
    return y.to(x.dtype)


def _adaptive_mean(x: torch.Tensor, dim: int, out: int) -> torch.Tensor:
    n = size_tensor(x.shape[dim], x.device)
    i = torch.arange(out, device=x.device)
    start, end = (i * n) // out, ceil_div((i + 1) * n, out)
    total = torch.cumsum(x, dim)
    total = torch.cat([torch.zeros_like(total.narrow(dim, 0, 1)), total], dim)
    sums = total.index_select(dim, end) - total.index_select(dim, start)
    shape = [1] * x.dim()
    shape[dim] = out
    return sums / (end - start).to(x.dtype).view(shape)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """Cut a map into non-overlapping windows.

    Args:
        x: (B, H, W, C), H and W multiples of ``window``.
        window: window side.

    Returns:
        (B * H/window * W/window, window * window, C)
    """
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    # (B, nH, wh, nW, ww, C) -> (B, nH, nW, wh, ww, C) -> (B*nW_total, wh*ww, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`.

    Args:
        windows: (B * H/window * W/window, window * window, C)
        window: window side.
        H, W: size of the (padded) map.

    Returns:
        (B, H, W, C)
    """
    C = windows.shape[-1]
    x = windows.view(-1, H // window, W // window, window, window, C)
    # (B, nH, nW, wh, ww, C) -> (B, nH, wh, nW, ww, C) -> (B, H, W, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def pad_to_multiple(x: torch.Tensor, multiple: int, channels_last: bool = True) -> torch.Tensor:
    """Zero-pad (B, H, W, C), or (B, C, H, W) if not ``channels_last``, at the bottom and right
    so H and W are multiples of ``multiple``."""
    H, W = x.shape[1:3] if channels_last else x.shape[2:]
    pad_h, pad_w = (-H) % multiple, (-W) % multiple
    # symbolic sizes always pad (by zero where nothing is missing): no branch on the shape
    if pad_h or pad_w if is_static(H, W) else True:
        x = F.pad(x, ((0, 0) if channels_last else ()) + (0, pad_w, 0, pad_h))
    return x


def effective_window(H: Size, W: Size, window: int, shift: int) -> tuple[Size, Size]:
    """Window and shift actually used on an H x W map.

    As in the official SwinV2 (and HF transformers): when the map is no larger than the window
    along its shorter side, the window shrinks to that side and the shift is dropped. Without a
    branch, so symbolic sizes (export) give a graph that decides it: the window is
    ``min(H, W, window)``, the shift ``shift`` only where the shorter side exceeds the window.
    """
    short = size_min(H, W)
    larger = size_min(size_max(short - window, 0), 1)  # 1 where short > window, else 0
    return size_min(short, window), larger * shift


def window_order(H: Size, W: Size, window: Size, shift: Size,
                 device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each token of the padded, shifted, partitioned map comes from, by arithmetic.

    The reference code zero-pads an H x W map to window multiples (Hp x Wp), rolls it by
    ``-shift`` and cuts it into windows (:func:`window_partition`). Position (i, j, a, b) of
    that window order (window row i, window column j, offset a, b) holds padded-map row
    ``(i * window + a + shift) % Hp`` and column ``(j * window + b + shift) % Wp``. Only
    arithmetic on the sizes, so symbolic sizes give a graph that computes the order.

    Returns:
        source: (num_windows, window*window) int64; the row-major token of the H x W map at
            each position, or the value H*W where the position holds padding.
        position: (H, W) int64; the position (window * window^2 + offset) of each token of
            the map (the inverse).
    """
    nh, nw = ceil_div(H, window), ceil_div(W, window)
    Hp, Wp = nh * window, nw * window
    # the sizes as tensors: (window, shift, map height, map width, padded height, width)
    win, sh, ht, wt, hp, wp = (size_tensor(n, device) for n in (window, shift, H, W, Hp, Wp))
    offset = torch.arange(window, device=device)
    # (nh, window) padded-map rows, (nw, window) columns, of each window row / column
    rows = (torch.arange(nh, device=device).unsqueeze(1) * win + offset + sh) % hp
    cols = (torch.arange(nw, device=device).unsqueeze(1) * win + offset + sh) % wp
    r, c = rows[:, None, :, None], cols[None, :, None, :]  # (nh, 1, w, 1), (1, nw, 1, w)
    # (nh, nw, w, w) -> (nW, N): merging dims, which symbolic sizes need no division for
    source = torch.where((r < ht) & (c < wt), r * wt + c, ht * wt).reshape(
        nh * nw, window * window)
    # the window-order coordinates of each map row / column: rolled by -shift
    rr = (torch.arange(H, device=device) + hp - sh) % hp
    cc = (torch.arange(W, device=device) + wp - sh) % wp
    window_index = (rr // win).unsqueeze(1) * nw + cc // win  # (H, W)
    position = (window_index * win + (rr % win).unsqueeze(1)) * win + cc % win
    return source, position


def window_layout(H: int, W: int, window: int,
                  shift: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`window_order` and the positions that hold padding.

    Returns:
        source: (Hp*Wp,) int64, as :func:`window_order`.
        position: (H*W,) int64, as :func:`window_order`.
        pad: (Hp*Wp - H*W,) int64; the layout positions that hold padding, ascending.
    """
    source, position = (t.reshape(-1) for t in window_order(H, W, window, shift))
    # padding (the value H*W) sorts last, in ascending positions: fixed-shape ops only, so it
    # traces under torch.compile (nonzero would break the graph)
    return source, position, torch.argsort(source, stable=True)[H * W:]


def shift_attn_mask(H: Size, W: Size, window: Size, shift: Size,
                    device: torch.device | None = None) -> torch.Tensor:
    """Additive mask that keeps shifted windows from mixing regions that were not adjacent.

    Regions are labelled on the padded, rolled map exactly as the reference implementations
    do: along each side of padded length n, rows [0, n - window), [n - window, n - shift) and
    [n - shift, n). Padded tokens are not masked, as in the references. Computed from the sizes
    in window order by arithmetic, so symbolic sizes give a graph that computes it (a shift of
    0 gives a mask of zeros).

    Args:
        H, W: map size (padded to window multiples here, if not already).
        window: window side.
        shift: shift size.

    Returns:
        (num_windows, window*window, window*window) float32 tensor of 0 and ``MASK_VALUE``.
    """
    w, s = size_tensor(window, device), size_tensor(shift, device)

    def regions(n: Size) -> torch.Tensor:  # (windows along the side, window) labels
        count = ceil_div(n, window)
        q = torch.arange(count, device=device).unsqueeze(1) * w + \
            torch.arange(window, device=device)  # rolled-map row of each window row, offset
        padded = size_tensor(count * window, device)
        return (q >= padded - w).long() + (q >= padded - s).long()

    rows, cols = regions(H), regions(W)
    nh, nw = rows.shape[0], cols.shape[0]
    # (nh, 1, w, 1) and (1, nw, 1, w) -> (nW, N)
    labels = (rows[:, None, :, None] * 3 + cols[None, :, None, :]).reshape(
        nh * nw, window * window)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)  # (nW, N, N)
    return diff.ne(0).float() * MASK_VALUE


def relative_coords_table(window: Size, pretrained_window: int = 0) -> torch.Tensor:
    """Log-spaced relative coordinates fed to the CPB MLP.

    Offsets in [-(window-1), window-1] are normalised by ``pretrained_window - 1`` (by
    ``window - 1`` when ``pretrained_window`` is 0), scaled to [-8, 8] and log-spaced.
    A 1x1 window has only the zero offset; it maps to 0 (the references divide by zero there).

    Returns:
        (2*window-1, 2*window-1, 2) float32 tensor.
    """
    coords = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(coords, coords, indexing='ij'), dim=-1)
    norm = (pretrained_window if pretrained_window > 0 else window) - 1
    # a 1x1 window's table is 0 whatever divides it
    table = table / size_tensor(size_max(norm, 1), dtype=torch.float32)
    table = table * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_position_index(window: Size) -> torch.Tensor:
    """For each (query, key) pair in a window, the row of the flattened coordinate table.

    Returns:
        (window*window, window*window) int64 tensor.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing='ij')).flatten(1)  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
    rel = rel + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Stochastic depth: zero each sample's ``x`` with probability ``prob``, scale the kept
    ones by ``1 / (1 - prob)``; ``x`` itself for 0. The draws of timm's ``drop_path``."""
    if prob == 0.0:
        return x
    keep = 1.0 - prob
    # one draw per sample, broadcast over the rest: (B, 1, ..., 1)
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


def select_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x.index_select(1, index)`` of (B, L, C) tokens; for one image through its (L, C) view,
    whose ``index_select`` copies whole rows (several times faster, BENCHMARKS.md)."""
    if x.shape[0] == 1:
        return x[0].index_select(0, index).unsqueeze(0)
    return x.index_select(1, index)
