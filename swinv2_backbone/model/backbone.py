"""The SwinV2 backbone: NCHW feature maps at strides 4, 8, 16, 32 for images of any size."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .blocks import CHECKPOINT_SCOPES, PatchEmbed, SwinV2Stage
from ..kernels.cpu import channels_first
from ..runtime.execution import Execution, Request, check_execution, decide
from ..runtime.graphs import CudaGraphs
from ..compat import AUTOCAST_DEVICES, autocast_enabled
from ..ops import is_static

__all__ = ['ARCH_PRESETS', 'FEATURE_NAMES', 'SwinV2Backbone']

# The SwinV2 paper's models. SwinV2-G adds a LayerNorm on the main branch every 6 blocks.
ARCH_PRESETS: dict[str, dict] = {
    'tiny': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    'giant': dict(embed_dim=512, depths=(2, 2, 42, 4), num_heads=(16, 32, 64, 128),
                  extra_norm_every_n_blocks=6),
}

# HF-style names of the maps forward can return; out_indices i means FEATURE_NAMES[i + 1].
FEATURE_NAMES = ('stem', 'stage1', 'stage2', 'stage3', 'stage4')


def _per_stage(value: int | Sequence[int], num_stages: int, name: str) -> tuple[int, ...]:
    values = (value,) * num_stages if isinstance(value, int) else tuple(value)
    if len(values) != num_stages or not all(isinstance(v, int) for v in values):
        raise ValueError(f'{name} must be an int or {num_stages} ints, got {value!r}')
    return values


class SwinV2Backbone(BaseModule):
    """Swin Transformer V2 (Liu et al., CVPR 2022) as a dense-prediction backbone.

    Args:
        arch: 'tiny', 'small', 'base', 'large' or 'giant', or a dict with ``embed_dim``,
            ``depths``, ``num_heads`` and optionally ``extra_norm_every_n_blocks`` (a LayerNorm
            closing every n-th block, as SwinV2-G has). ``embed_dim``, ``depths`` and
            ``num_heads`` given explicitly override the preset.
        window_size: window side, one int or one per stage.
        pretrained_window_sizes: per stage (or one int for all), the window the CPB was
            pretrained at (0 = none: the window itself). The CPB coordinates are normalised by
            it; see :meth:`set_window_size` for what a window change keeps.
        out_indices: stages to return, OpenMMLab style (0..3 = stage1..stage4).
        out_features: maps to return, HF style names (``stem`` = patch-embedding output,
            ``stage1``..``stage4``). With ``out_indices`` too, both must name the same maps.
            Default: all four stages.
        out_norm: apply a LayerNorm to each returned map.
        patch_size, in_channels: patch embedding.
        mlp_ratio, qkv_bias: block hyper-parameters.
        drop_rate, attn_drop_rate, drop_path_rate: regularisation; drop path grows linearly
            with depth up to ``drop_path_rate``.
        use_abs_pos_embed: add a learned absolute position embedding to the stem, defined on the
            ``pretrain_img_size`` grid and bicubically resized to any input.
        pretrain_img_size: image size the absolute position embedding is defined for.
        with_cp: gradient checkpointing in training: True or 'block' recomputes every block
            in backward (least memory, a third more compute); 'mlp' keeps each block's
            activations but the MLP's hidden layer, which backward recomputes with one GEMM
            (for SwinV2-T a quarter less activation memory for a tenth more FLOPs;
            BENCHMARKS.md); False keeps everything. The same results whichever.
        execution: how forward runs (:mod:`swinv2_backbone.runtime.execution`): 'auto' (the CPU
            kernels on CPU, whole-stage batched ops with ``scaled_dot_product_attention`` on
            GPUs), 'cpu', 'batched', or 'reference' (the official code's plain ops); or a
            :class:`~swinv2_backbone.runtime.execution.Request` that also chooses the GEMM library,
            the fused kernels and the chunk sizes. Every
            path gives the reference's result (tested); attention dropout in training runs the
            reference attention.
        cuda_graph: on CUDA inputs, capture the forward (and in training the backward) in a
            CUDA graph once per input signature and replay it
            (:mod:`~swinv2_backbone.runtime.graphs`): the same results, about twice the speed
            where the eager backbone waits on the host.
            For inputs of repeating shapes (fixed crops, fixed-size jitter); each new shape
            costs a capture and keeps a memory pool. Off the GPU it does nothing.
        frozen_stages: -1 freezes nothing; 0 freezes the patch embedding (and absolute position
            embedding and the ``stem`` output norm); k >= 1 also freezes stages 1..k, each with
            the patch merging that feeds it and its output norm, so stage k's output is fixed.
            Frozen parts have ``requires_grad=False`` and stay in eval mode through ``train()``.
        mask_token: add the learned token that replaces masked patches in SimMIM pretraining
            (``forward(x, mask)``, mmpretrain's ``SimMIM``); loading its checkpoint into a model
            without one drops it.
        norm_eval: keep normalisation layers in eval mode during training. SwinV2 has only
            LayerNorms, which compute the same in both modes; accepted so mmdet/mmseg configs
            that set it keep working.
        init_cfg: mmengine init config, e.g. ``dict(type='Pretrained', checkpoint=PATH)``.

    When a stage's map is no larger than its window along the shorter side, that stage uses a
    window equal to the shorter side and no shift, as the official implementation does.
    """

    def __init__(self, arch: str | dict = 'tiny', embed_dim: int | None = None,
                 depths: Sequence[int] | None = None, num_heads: Sequence[int] | None = None,
                 window_size: int | Sequence[int] = 8,
                 pretrained_window_sizes: int | Sequence[int] = 0,
                 out_indices: Sequence[int] | None = None,
                 out_features: Sequence[str] | None = None, out_norm: bool = True,
                 patch_size: int = 4, in_channels: int = 3, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1, use_abs_pos_embed: bool = False,
                 pretrain_img_size: int = 256, with_cp: bool | str = False,
                 execution: str | Request = 'auto', cuda_graph: bool = False,
                 frozen_stages: int = -1, mask_token: bool = False,
                 norm_eval: bool = False, init_cfg: dict | list | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, str):
            if arch not in ARCH_PRESETS:
                raise ValueError(f'unknown arch {arch!r}; choose from {sorted(ARCH_PRESETS)} '
                                 'or pass a dict')
            preset = ARCH_PRESETS[arch]
        elif isinstance(arch, dict):
            accepted = ('embed_dim', 'depths', 'num_heads', 'extra_norm_every_n_blocks')
            unknown = set(arch) - set(accepted)
            if unknown:
                hint = " (OpenMMLab's 'embed_dims' is 'embed_dim' here)" \
                    if 'embed_dims' in unknown else ''
                raise ValueError(f'unknown arch keys {sorted(unknown)}; accepted: '
                                 f'{list(accepted)}{hint}')
            preset = arch
        else:
            raise TypeError(f'arch must be a str or dict, got {type(arch).__name__}')
        embed_dim = embed_dim if embed_dim is not None else preset.get('embed_dim')
        depths = tuple(depths if depths is not None else preset.get('depths', ()))
        num_heads = tuple(num_heads if num_heads is not None else preset.get('num_heads', ()))
        if not isinstance(embed_dim, int) or embed_dim <= 0:
            raise ValueError(f'embed_dim must be a positive int, got {embed_dim!r}')
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f'depths {depths} and num_heads {num_heads} must be non-empty and '
                             'of the same length')
        num_stages = len(depths)
        windows = _per_stage(window_size, num_stages, 'window_size')
        if any(w <= 0 for w in windows):
            raise ValueError(f'window sizes must be positive, got {window_size!r}')
        pretrained = _per_stage(pretrained_window_sizes, num_stages, 'pretrained_window_sizes')
        if any(w < 0 for w in pretrained):
            raise ValueError(f'pretrained_window_sizes must be >= 0, got {pretrained}')
        for name, v in (('patch_size', patch_size), ('in_channels', in_channels)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f'{name} must be a positive int, got {v!r}')
        check_execution(execution)
        if not (isinstance(with_cp, bool) or with_cp in CHECKPOINT_SCOPES):
            raise ValueError(f'with_cp must be a bool or one of {CHECKPOINT_SCOPES}, got '
                             f'{with_cp!r}')
        if not isinstance(cuda_graph, bool):
            raise TypeError(f'cuda_graph must be a bool, got {cuda_graph!r}')
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be in [-1, {num_stages}], got {frozen_stages}')

        self.depths, self.num_heads = depths, num_heads
        self.patch_size, self.in_channels = patch_size, in_channels
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        self.execution, self.dropout = execution, max(drop_rate, attn_drop_rate)
        self.cuda_graph = cuda_graph
        self._graphs = CudaGraphs()
        self.feature_names = FEATURE_NAMES[:num_stages + 1]
        self.num_features = tuple([embed_dim] + [embed_dim * 2**i for i in range(num_stages)])
        self.out_features = self._resolve_outputs(out_indices, out_features)
        self.out_indices = tuple(self.feature_names.index(n) - 1 for n in self.out_features)
        # the output contract: what forward returns, in order
        self.out_channels = tuple(self.num_features[i + 1] for i in self.out_indices)
        self.out_strides = tuple(patch_size * 2**max(i, 0) for i in self.out_indices)

        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size)
        if use_abs_pos_embed:
            grid = max(pretrain_img_size // patch_size, 1)
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, grid, grid))
        else:
            self.absolute_pos_embed = None
        # SimMIM: masked patches are replaced by a learned token (the official SimMIM SwinV2)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim)) if mask_token else None
        self.pos_drop = nn.Dropout(drop_rate)
        total = sum(depths)  # drop path grows linearly over all blocks (plain Python: meta-safe)
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList(
            SwinV2Stage(self.num_features[i + 1], depths[i], num_heads[i], windows[i],
                        pretrained[i], downsample=i > 0, mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate,
                        drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                        with_cp='block' if with_cp is True else with_cp or None,
                        extra_norm_every=preset.get('extra_norm_every_n_blocks', 0))
            for i in range(num_stages))
        self.out_norms = nn.ModuleDict(
            {name: nn.LayerNorm(self.num_features[self.feature_names.index(name)])
             for name in self.out_features} if out_norm else {})
        self._freeze_stages()

    def _resolve_outputs(self, out_indices: Sequence[int] | None,
                         out_features: Sequence[str] | None) -> tuple[str, ...]:
        num_stages = len(self.feature_names) - 1
        names_from_indices = None
        if out_indices is not None:
            if isinstance(out_indices, int):
                out_indices = (out_indices,)
            bad = [i for i in out_indices if not isinstance(i, int) or not 0 <= i < num_stages]
            if bad or not out_indices:
                raise ValueError(f'out_indices must be non-empty, in [0, {num_stages - 1}], got '
                                 f'{tuple(out_indices)!r}')
            names_from_indices = [self.feature_names[i + 1] for i in out_indices]
        if out_features is not None:
            if isinstance(out_features, str):
                out_features = (out_features,)
            bad = [n for n in out_features if n not in self.feature_names]
            if bad or not out_features:
                raise ValueError(f'out_features must be non-empty names from '
                                 f'{self.feature_names}, got {tuple(out_features)!r}')
            if names_from_indices is not None and set(out_features) != set(names_from_indices):
                raise ValueError(f'out_indices {tuple(out_indices)} and out_features '
                                 f'{tuple(out_features)} name different maps')
            names = list(out_features)
        else:
            names = names_from_indices or list(self.feature_names[1:])
        if len(set(names)) != len(names):
            raise ValueError(f'outputs listed twice: {tuple(names)}')
        return tuple(sorted(names, key=self.feature_names.index))

    # ---------------------------------------------------------------- run-time configuration
    def set_window_size(self, window_size: int | Sequence[int]) -> None:
        """Change the window of every stage (one int or one per stage) without touching weights.

        The CPB coordinate tables and relative indices are rebuilt for the new windows; the
        learned CPB MLP keeps the normalisation it was built with: ``pretrained_window_sizes``,
        or for a stage whose pretrained window is 0, the window it had, which becomes its
        pretrained window. So building at window 8 and calling ``set_window_size(16)`` equals
        building at 16 with ``pretrained_window_sizes=8`` and the same weights (tested).
        """
        windows = _per_stage(window_size, len(self.stages), 'window_size')
        if any(w <= 0 for w in windows):
            raise ValueError(f'window sizes must be positive, got {window_size!r}')
        self._graphs.clear()
        for stage, w in zip(self.stages, windows):
            stage.set_window_size(w)

    @property
    def window_sizes(self) -> tuple[int, ...]:
        return tuple(stage.window_size for stage in self.stages)

    # ---------------------------------------------------------------- init / freezing
    def init_weights(self) -> None:
        """Official SwinV2 init; then the checkpoint named by ``init_cfg``, if any.

        ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` loads any supported layout
        (official, HF, timm, mmpretrain, ours) through :func:`~swinv2_backbone.load_pretrained`;
        optional keys: ``prefix`` and ``format``. Other init_cfg types go to mmengine.
        """
        cfg = self.init_cfg
        if cfg is not None and not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        self._official_init()
        if cfg is not None:
            from ..weights.loading import load_pretrained
            unknown = set(cfg) - {'type', 'checkpoint', 'prefix', 'format'}
            if unknown:
                raise ValueError(f'unsupported Pretrained init_cfg keys {sorted(unknown)}')
            load_pretrained(self, cfg['checkpoint'], fmt=cfg.get('format', 'auto'),
                            prefix=cfg.get('prefix', ''))
        self._is_init = True

    def _official_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.absolute_pos_embed, self.mask_token):
            if p is not None:
                trunc_normal_(p, std=0.02)
        # res-post-norm starts every block as the identity (official _init_respostnorm)
        for stage in self.stages:
            for blk in stage.blocks:
                for norm in (blk.norm1, blk.norm2):
                    nn.init.zeros_(norm.weight)
                    nn.init.zeros_(norm.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        mods = [self.patch_embed]
        names = list(self.feature_names[:self.frozen_stages + 1])
        mods += list(self.stages[:self.frozen_stages])
        mods += [self.out_norms[n] for n in names if n in self.out_norms]
        return mods

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0 and self.absolute_pos_embed is not None:
            self.absolute_pos_embed.requires_grad = False
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def _apply(self, fn, recurse: bool = True):
        # .to / .cuda / .half may give the parameters new storage: the graphs read the old
        self._graphs.clear()
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> SwinV2Backbone:
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, (nn.LayerNorm, _BatchNorm)):
                    m.eval()
        return self

    # ---------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'expected a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError(f'expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}')
        if not x.is_floating_point():
            raise TypeError(f'expected a floating-point tensor, got dtype {x.dtype}')
        if not is_static(*x.shape):  # recorded for export: checked on the example beforehand
            return
        if x.shape[1] != self.in_channels:
            raise ValueError(f'expected {self.in_channels} input channels, got {x.shape[1]} '
                             f'(shape {tuple(x.shape)})')
        if min(x.shape[2:]) < self.patch_size:
            raise ValueError(f'input {tuple(x.shape[2:])} is smaller than one '
                             f'{self.patch_size}x{self.patch_size} patch')

    def _check_dtype(self, x: torch.Tensor) -> None:
        """Outside autocast the input's dtype must be the weights' (else torch fails deep
        inside a matmul)."""
        weight = self.patch_embed.proj.weight.dtype
        device = x.device.type
        autocast = device in AUTOCAST_DEVICES and autocast_enabled(device)
        if x.dtype != weight and not autocast:
            raise TypeError(f'input dtype {x.dtype} differs from the model\'s {weight} weights: '
                            f'cast the input (x.to({weight})) or the model, or run under '
                            'torch.autocast')

    def _abs_pos_embed(self, h: int, w: int) -> torch.Tensor:
        pos = self.absolute_pos_embed
        if not is_static(h, w) or pos.shape[2:] != (h, w):
            pos = F.interpolate(pos, size=(h, w), mode='bicubic', align_corners=False)
        return pos.permute(0, 2, 3, 1)  # (1, C, h, w) -> (1, h, w, C)

    def forward(self, x: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(B, C_in, H, W) -> tuple of (B, out_channels[i], ceil(H/s_i), ceil(W/s_i)).

        ``mask`` (SimMIM pretraining, with ``mask_token=True``): (B, ceil(H/p), ceil(W/p)), 1
        where a patch is replaced by the mask token, as mmpretrain's ``SimMIM`` passes it.
        """
        self._check_input(x)
        self._check_dtype(x)
        if mask is not None:
            self._check_mask(x, mask)
        execution = decide(self.execution, x, self.parameters(),
                           dropout=self.training and self.dropout > 0,
                           cuda_graph=self.cuda_graph and mask is None)
        if execution.cuda_graph:
            return self._graphs(self._forward, x, execution, list(self.parameters()),
                                self.training,
                                keep=lambda: [list(s._layouts.values()) for s in self.stages])
        return self._forward(x, execution, mask)

    def _check_mask(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        if self.mask_token is None:
            raise ValueError('a mask needs a mask token: build with mask_token=True (SimMIM '
                             'pretraining)')
        grid = (x.shape[0], -(-x.shape[2] // self.patch_size), -(-x.shape[3] // self.patch_size))
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != grid:
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f'mask must be a (B, H/patch, W/patch) = {grid} tensor for input '
                             f'{tuple(x.shape)}, got {got}')

    def _forward(self, x: torch.Tensor, execution: Execution,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The eager forward, as :meth:`forward` decided to run it."""
        x = self.patch_embed(x, execution)  # (B, h, w, C)
        if mask is not None:
            w = mask.unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        if self.absolute_pos_embed is not None:
            x = x + self._abs_pos_embed(*x.shape[1:3])
        x = self.pos_drop(x)
        outs = []
        last = self.feature_names.index(self.out_features[-1])
        for i, name in enumerate(self.feature_names[:last + 1]):
            if i > 0:
                x = self.stages[i - 1](x, execution)
            if name in self.out_features:
                y = self.out_norms[name](x) if name in self.out_norms else x
                outs.append(channels_first(y, execution))  # (B, h, w, C) -> (B, C, h, w)
        return tuple(outs)
