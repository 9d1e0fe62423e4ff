"""Checkpoint layouts: detection and key mapping to this package's layout, as pure functions.

Every ``from_*`` function takes a flat state dict in a reference layout and returns
``(state_dict_in_our_layout, dropped_keys)``. Dropped are heads, decoders and window-dependent
buffers (``relative_coords_table``, ``relative_position_index``, ``attn_mask``), which this
package derives from the windows of the model being loaded into.

Our layout (see ``SwinV2Backbone``)::

    patch_embed.{proj,norm}.*           absolute_pos_embed (1, C, gh, gw)
    stages.{i}.downsample.{reduction,norm}.*        (i >= 1; merging at the start of a stage)
    stages.{i}.blocks.{j}.attn.{qkv.weight,q_bias,v_bias,logit_scale,cpb_mlp.{0,2}.*,proj.*}
    stages.{i}.blocks.{j}.{norm1,norm2,norm3,mlp.fc1,mlp.fc2}.*
    out_norms.{stem,stage1..stage4}.*
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

import torch

__all__ = ['FORMATS', 'convert_state_dict', 'detect_format', 'from_hf', 'from_mmpretrain',
           'from_official', 'from_ours', 'from_timm', 'infer_arch']

StateDict = dict[str, torch.Tensor]

DERIVED_BUFFERS = ('relative_coords_table', 'relative_position_index', 'attn_mask', 'k_bias')


def _strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def _tokens_to_grid(pos: torch.Tensor) -> torch.Tensor:
    """(1, N, C) absolute position embedding on a square grid -> (1, C, g, g)."""
    n, c = pos.shape[1:]
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f'absolute_pos_embed with {n} tokens is not a square grid')
    return pos.reshape(1, g, g, c).permute(0, 3, 1, 2).contiguous()


def _num_stages(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    ids = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    return max(ids) + 1 if ids else 0


def _swin_layout(sd: Mapping[str, torch.Tensor], merge_at_end: bool) -> tuple[StateDict, list]:
    """Official Microsoft / timm layout (``layers.{i}...``) to ours."""
    out, dropped = {}, []
    last = 'stage%d' % _num_stages(sd, r'layers\.(\d+)\.')
    for k, v in sd.items():
        if k.startswith('head.') or any(b in k for b in DERIVED_BUFFERS):
            dropped.append(k)
            continue
        if k == 'absolute_pos_embed':
            v = _tokens_to_grid(v) if v.dim() == 3 else v
        elif k.startswith('norm.'):
            k = f'out_norms.{last}.' + k[len('norm.'):]
        elif m := re.match(r'layers\.(\d+)\.downsample\.(.*)', k):
            stage = int(m.group(1)) + (1 if merge_at_end else 0)
            k = f'stages.{stage}.downsample.{m.group(2)}'
        elif k.startswith('layers.'):
            k = 'stages.' + k[len('layers.'):]
        out[k] = v
    return out, dropped


def from_official(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, list]:
    """Microsoft's SwinV2 release (patch merging at the end of a stage), SimMIM included."""
    # SimMIM checkpoints hold the backbone under `encoder.` beside a pixel decoder
    dropped = [k for k in sd if k.startswith('decoder.') or k.endswith('mask_token')]
    body = {k.removeprefix('encoder.'): v for k, v in sd.items() if k not in dropped}
    out, more = _swin_layout(body, True)
    return out, dropped + more


def from_timm(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, list]:
    """timm ``swinv2_*``: current layout (merging at the start of a stage) or the older one."""
    old_layout = 'layers.0.downsample.reduction.weight' in sd
    return _swin_layout(sd, merge_at_end=old_layout)


_HF_BLOCK = {
    'attention.self.logit_scale': 'attn.logit_scale',
    'attention.self.continuous_position_bias_mlp.': 'attn.cpb_mlp.',
    'attention.output.dense.': 'attn.proj.',
    'layernorm_before.': 'norm1.',
    'layernorm_after.': 'norm2.',
    'intermediate.dense.': 'mlp.fc1.',
    'output.dense.': 'mlp.fc2.',
}


def from_hf(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, list]:
    """HF transformers ``Swinv2Model`` / ``ForImageClassification`` / ``ForMaskedImageModeling``
    / ``Backbone`` state dicts."""
    if any(k.startswith('swinv2.') for k in sd):
        sd = {k[len('swinv2.'):] if k.startswith('swinv2.') else k: v for k, v in sd.items()}
    out, dropped, qkv = {}, [], {}
    last = 'stage%d' % _num_stages(sd, r'encoder\.layers\.(\d+)\.')
    for k, v in sd.items():
        if k.startswith(('classifier.', 'decoder.', 'pooler.', 'embeddings.mask_token')) or \
                any(b in k for b in DERIVED_BUFFERS):
            dropped.append(k)
            continue
        if k.startswith('embeddings.patch_embeddings.projection.'):
            k = 'patch_embed.proj.' + k.rsplit('.', 1)[1]
        elif k.startswith('embeddings.norm.'):
            k = 'patch_embed.norm.' + k.rsplit('.', 1)[1]
        elif k == 'embeddings.position_embeddings':
            # HF sizes it for num_patches + 1 tokens; the first is unused by a SwinV2 backbone
            n = v.shape[1]
            k, v = 'absolute_pos_embed', _tokens_to_grid(v[:, 1:] if math.isqrt(n) ** 2 != n else v)
        elif k.startswith('layernorm.'):
            k = f'out_norms.{last}.' + k.rsplit('.', 1)[1]
        elif m := re.match(r'hidden_states_norms\.(\w+)\.(\w+)$', k):
            k = f'out_norms.{m.group(1)}.{m.group(2)}'
        elif m := re.match(r'encoder\.layers\.(\d+)\.downsample\.(.*)', k):
            k = f'stages.{int(m.group(1)) + 1}.downsample.{m.group(2)}'
        elif m := re.match(r'encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.*)', k):
            prefix, rest = f'stages.{m.group(1)}.blocks.{m.group(2)}.', m.group(3)
            if q := re.match(r'attention\.self\.(query|key|value)\.(weight|bias)', rest):
                qkv.setdefault(prefix, {})[(q.group(1), q.group(2))] = v
                continue
            for src, dst in _HF_BLOCK.items():
                if rest.startswith(src):
                    rest = dst + rest[len(src):]
                    break
            k = prefix + rest
        out[k] = v
    for prefix, parts in qkv.items():
        out[prefix + 'attn.qkv.weight'] = torch.cat(
            [parts[(n, 'weight')] for n in ('query', 'key', 'value')])
        if ('query', 'bias') in parts:
            out[prefix + 'attn.q_bias'] = parts[('query', 'bias')]
            out[prefix + 'attn.v_bias'] = parts[('value', 'bias')]
    return out, dropped


def _unfold_to_official(w: torch.Tensor) -> torch.Tensor:
    """Reorder a patch-merging reduction weight from nn.Unfold order (C, kh, kw) to the official
    concatenation order ((0,0), (1,0), (0,1), (1,1)) x C."""
    out_ch, in_ch = w.shape
    w = w.reshape(out_ch, in_ch // 4, 2, 2)  # (out, C, kh, kw)
    return w.permute(0, 3, 2, 1).reshape(out_ch, in_ch)  # (out, kw, kh, C)


def from_mmpretrain(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, list]:
    """mmpretrain ``SwinTransformerV2`` (``backbone.`` prefix in whole-classifier checkpoints)."""
    dropped = [k for k in sd if k.startswith(('head.', 'neck.', 'data_preprocessor.'))]
    sd = _strip_prefix({k: v for k, v in sd.items() if k not in dropped}, 'backbone.')
    out = {}
    for k, v in sd.items():
        if any(b in k for b in DERIVED_BUFFERS):
            dropped.append(k)
            continue
        if k.startswith('patch_embed.projection.'):
            k = k.replace('patch_embed.projection.', 'patch_embed.proj.')
        elif k == 'absolute_pos_embed':
            v = _tokens_to_grid(v)
        elif m := re.match(r'norm(\d+)\.(.*)', k):
            k = f'out_norms.stage{int(m.group(1)) + 1}.{m.group(2)}'
        elif k.endswith('downsample.reduction.weight'):
            v = _unfold_to_official(v)
        else:
            k = (k.replace('.attn.w_msa.', '.attn.')
                 .replace('.ffn.layers.0.0.', '.mlp.fc1.')
                 .replace('.ffn.layers.1.', '.mlp.fc2.'))
        out[k] = v
    return out, dropped


def from_ours(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, list]:
    """This package's layout, bare or inside an mmdet/mmseg model (``backbone.`` prefix)."""
    keys = [k for k in sd if k.startswith('backbone.')]
    if keys:
        dropped = [k for k in sd if not k.startswith('backbone.')]
        sd = {k[len('backbone.'):]: sd[k] for k in keys}
    else:
        dropped = []
    dropped += [k for k in sd if any(b in k for b in DERIVED_BUFFERS)]
    return {k: v for k, v in sd.items() if k not in dropped}, dropped


FORMATS: dict[str, Callable[[Mapping[str, torch.Tensor]], tuple[StateDict, list]]] = {
    'ours': from_ours,
    'official': from_official,
    'timm': from_timm,
    'hf': from_hf,
    'mmpretrain': from_mmpretrain,
}


# layouts with the same keys: the official release and timm differ in where patch merging sits,
# which their converters read from the keys
_FAMILY = {'official': 'swin', 'timm': 'swin'}
# a key of each layout's blocks, whatever prefix a wrapper puts before it (mmdet/mmseg's and
# mmpretrain's ``backbone.``, HF task models' ``swinv2.``, SimMIM's ``encoder.``, timm's
# ``FeatureGetterNet`` ``model.``)
ANCHORS = {
    'ours': r'stages\.\d+\.blocks\.\d+\.attn\.cpb_mlp\.',
    'hf': r'encoder\.layers\.\d+\.blocks\.\d+\.attention\.self\.continuous_position_bias_mlp\.',
    'mmpretrain': r'stages\.\d+\.blocks\.\d+\.attn\.w_msa\.cpb_mlp\.',
    'swin': r'layers\.\d+\.blocks\.\d+\.attn\.cpb_mlp\.',  # official and timm
}
_LOOKED_FOR = ('stages.N.blocks.N.attn.cpb_mlp (this package), '
               'encoder.layers.N.blocks.N.attention.self.continuous_position_bias_mlp (HF '
               'transformers), stages.N.blocks.N.attn.w_msa.cpb_mlp (mmpretrain), '
               'layers.N.blocks.N.attn.cpb_mlp (the official release, timm)')


def _normalise(keys):
    """timm's feature wrappers (``features_only``: FeatureListNet, FeatureDictNet) name stage i
    ``layers_i``; the models themselves ``layers.i``."""
    return [re.sub(r'(^|\.)layers_(\d+)\.', r'\1layers.\2.', k) for k in keys]


def _prefix(keys: list[str], fmt: str) -> str:
    """What comes before the layout's keys (``backbone.``, ``swinv2.``, ...; '' for none)."""
    anchor = re.compile(r'^(.*?)' + ANCHORS[_FAMILY.get(fmt, fmt)])
    for k in keys:
        if m := anchor.match(k):
            return m.group(1)
    return ''


def detect_format(keys: list[str] | Mapping[str, torch.Tensor]) -> str:
    """Name the layout of a flat state dict from its keys.

    Raises:
        ValueError: when the keys are not those of any SwinV2 layout (Swin v1, ResNet, ...).
    """
    keys = _normalise(list(keys))
    has = lambda pat: any(re.search(pat, k) for k in keys)  # noqa: E731
    for fmt in ('ours', 'hf', 'mmpretrain'):
        if has(r'(^|\.)' + ANCHORS[fmt]):
            return fmt
    if has(r'(^|\.)' + ANCHORS['swin']):
        # the official release puts patch merging at the end of stages, timm at their start
        if has(r'(^|\.)layers\.0\.downsample\.') or has(r'^encoder\.'):
            return 'official'
        return 'timm'
    cpb = [k for k in keys if 'cpb_mlp' in k or 'continuous_position_bias' in k]
    if cpb:
        found = f'its continuous-position-bias MLP keys are in no layout read here: {cpb[:3]}'
    elif any('relative_position_bias_table' in k for k in keys):
        found = 'it has relative_position_bias_table but no continuous-position-bias MLP: ' \
                'a Swin v1 checkpoint?'
        found += f' First keys: {", ".join(keys[:3])}'
    else:
        found = f'none of its {len(keys)} keys is a continuous-position-bias MLP; first keys: ' \
                f'{", ".join(keys[:3])}'
    raise ValueError(f'not a SwinV2 checkpoint in a layout this package reads (looked for '
                     f'{_LOOKED_FOR}, under any prefix): {found}')


def convert_state_dict(sd: Mapping[str, torch.Tensor],
                       fmt: str = 'auto') -> tuple[StateDict, list, str]:
    """Map ``sd`` to our layout. Returns ``(state_dict, dropped_keys, format_used)``.

    A ``fmt`` named by the caller must be the layout the keys are in (official and timm share
    theirs), else a ValueError names the detected one: mapping keys of one layout by another's
    rules would write them unchanged.
    """
    if fmt not in ('auto', *FORMATS):
        raise ValueError(f'unknown checkpoint format {fmt!r}; choose from auto, '
                         f'{", ".join(FORMATS)}')
    detected = detect_format(sd)
    if fmt == 'auto':
        fmt = detected
    elif _FAMILY.get(fmt, fmt) != _FAMILY.get(detected, detected):
        raise ValueError(f"the keys are in the {detected} layout, not {fmt}'s (first keys: "
                         f"{', '.join(list(sd)[:3])}); convert with {detected!r} or 'auto'")
    names = dict(zip(_normalise(sd), sd))  # normalised name -> the checkpoint's own
    prefix = _prefix(list(names), fmt)
    outside = [names[k] for k in names if not k.startswith(prefix)]
    body = {k[len(prefix):]: sd[names[k]] for k in names if k.startswith(prefix)}
    out, dropped = FORMATS[fmt](body)
    return out, outside + dropped, fmt


def infer_arch(sd: Mapping[str, torch.Tensor]) -> dict:
    """``embed_dim``, ``depths`` and ``num_heads`` of a state dict in our layout."""
    blocks: dict[int, set[int]] = {}
    for k in sd:
        if m := re.match(r'stages\.(\d+)\.blocks\.(\d+)\.', k):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if 'patch_embed.proj.weight' not in sd or not blocks:
        raise ValueError('cannot infer the architecture: no patch embedding or blocks')
    stages = range(max(blocks) + 1)
    return dict(
        embed_dim=int(sd['patch_embed.proj.weight'].shape[0]),
        depths=tuple(max(blocks[i]) + 1 for i in stages),
        num_heads=tuple(int(sd[f'stages.{i}.blocks.0.attn.logit_scale'].shape[0])
                        for i in stages))
