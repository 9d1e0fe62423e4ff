"""Pure tensor helpers: window partition, padding, shift masks, the CPB coordinate tables, and
the SwinV2 attention math every execution path shares (q/k normalisation and the logits).

Nothing here holds state; modules call these and cache what they return.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    'window_partition', 'window_reverse', 'pad_to_multiple', 'shift_attn_mask',
    'relative_coords_table', 'relative_position_index', 'effective_window', 'window_layout',
    'NORM_EPS', 'inverse_norm', 'attention_logits',
]

# F.normalize's epsilon: a norm at or below it is treated as zero
NORM_EPS = 1e-12


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


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad (B, H, W, C) at the bottom and right so H and W are multiples of ``multiple``."""
    _, H, W, _ = x.shape
    pad_h, pad_w = (-H) % multiple, (-W) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


def effective_window(H: int, W: int, window: int, shift: int) -> tuple[int, int]:
    """Window and shift actually used on an H x W map.

    As in the official SwinV2 (and HF transformers): when the map is no larger than the window
    along its shorter side, the window shrinks to that side and the shift is dropped.
    """
    if min(H, W) <= window:
        return min(H, W), 0
    return window, shift


def window_layout(H: int, W: int, window: int,
                  shift: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each token of the padded, shifted, partitioned map comes from.

    The reference code zero-pads an H x W map to window multiples, rolls it by ``-shift`` and
    cuts it into windows (:func:`window_partition`). This gives the same token order as one
    index, so a single gather replaces pad + roll + partition (and another one the way back).
    Only fixed-shape ops, so it traces under ``torch.compile``.

    Returns:
        source: (Hp*Wp,) int64; position j of the window layout (window j // window^2, offset
            j % window^2) holds token ``source[j]`` of the row-major H*W map, or the value
            H*W where it holds padding.
        position: (H*W,) int64; the layout position of each token of the map (its inverse).
        pad: (Hp*Wp - H*W,) int64; the layout positions that hold padding.
    """
    Hp, Wp = H + (-H) % window, W + (-W) % window
    grid = torch.arange(Hp * Wp).view(1, Hp, Wp, 1)
    grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2)) if shift else grid
    cell = window_partition(grid, window).reshape(-1)  # padded-grid cell at each position
    row, col = cell // Wp, cell % Wp
    source = torch.where((row < H) & (col < W), row * W + col, H * W)
    # each token appears once, padding (H*W) last: sorting gives tokens 0..H*W-1, then padding
    order = torch.argsort(source, stable=True)
    return source, order[:H * W], order[H * W:]


def shift_attn_mask(H: int, W: int, window: int, shift: int,
                    device: torch.device | None = None) -> torch.Tensor:
    """Additive mask that keeps shifted windows from mixing regions that were not adjacent.

    Regions are labelled on the padded (H, W) map exactly as the reference implementations do
    (pad first, then shift); padded tokens are not masked, as in the references.

    Args:
        H, W: padded map size, multiples of ``window``.
        window: window side.
        shift: shift size (> 0).

    Returns:
        (num_windows, window*window, window*window) float32 tensor of 0 and -100.
    """
    img = torch.zeros(1, H, W, 1, device=device)
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    labels = window_partition(img, window).squeeze(-1)  # (nW, N)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)  # (nW, N, N)
    return diff.ne(0).float() * -100.0


def relative_coords_table(window: int, pretrained_window: int = 0) -> torch.Tensor:
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
    if norm > 0:
        table = table / norm
    table = table * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def relative_position_index(window: int) -> torch.Tensor:
    """For each (query, key) pair in a window, the row of the flattened coordinate table.

    Returns:
        (window*window, window*window) int64 tensor.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing='ij')).flatten(1)  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2)
    rel = rel + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def inverse_norm(t: torch.Tensor) -> torch.Tensor:
    """``1 / |t|`` over the last dim, kept, in float32 at least; 0 where ``|t| <= NORM_EPS``.

    ``t * inverse_norm(t)`` is the unit vector ``F.normalize`` gives, the one q/k normalisation
    of every path. A vector at or below the epsilon (the zero padding's k, which has no bias)
    maps to zero as in ``F.normalize``, but passes no gradient: ``F.normalize``'s would be
    ``dy / NORM_EPS``, which overflows fp16 under AMP and only ever meets zero inputs.
    """
    dtype = torch.promote_types(t.dtype, torch.float32)
    norm = torch.linalg.vector_norm(t, dim=-1, keepdim=True, dtype=dtype)
    return torch.where(norm > NORM_EPS, norm.clamp_min(NORM_EPS).reciprocal(), 0.0)


def attention_logits(q: torch.Tensor, k: torch.Tensor, pos_bias: torch.Tensor,
                     mask: torch.Tensor | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """SwinV2's attention logits: ``temperature * cos(q, k) + pos_bias + shift mask``.

    Args:
        q: (n, heads, N, d) unit queries with the temperature folded in.
        k: (n, heads, N, d) unit keys.
        pos_bias: (heads, N, N) ``16 * sigmoid(CPB)``.
        mask: (n, N, N) shift-mask rows of these n windows, or None.
        out: (n * heads, N, N) buffer to write into (the CPU kernels reuse one).

    Returns:
        (n, heads, N, N)
    """
    n, h, N, d = q.shape
    if out is None:
        logits = q @ k.transpose(-2, -1)
    else:
        logits = torch.bmm(q.reshape(-1, N, d), k.reshape(-1, N, d).transpose(1, 2),
                           out=out).view(n, h, N, N)
    logits += pos_bias
    if mask is not None:
        logits += mask.unsqueeze(1).to(logits.dtype)
    return logits
