"""Feature-pyramid extraction: images in, multi-scale SwinV2 features out, resumable.

:func:`build_extractor` makes a backbone from a config, an arch name or a checkpoint of any
layout the package loads; :func:`extract_features` runs it over images and writes one file per
image (``.npz`` or ``.safetensors``, each with its stages' shape, stride and channel metadata) or
one file for the whole set; :func:`pca_picture` draws what each stage responds to.
"""
from __future__ import annotations

import glob
import json
import os
import time
import warnings
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from ..model.backbone import FEATURE_NAMES, SwinV2Backbone
from ..weights.checkpoints import convert_state_dict, infer_arch
from ..files import atomic_write
from ..weights.loading import load_pretrained, read_checkpoint

__all__ = ['ExtractSummary', 'build_extractor', 'extract_features', 'find_images',
           'input_size', 'pca_picture', 'plan_batches', 'preprocess']

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
# what the released checkpoints were trained with
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the autocast dtypes the tools' --amp names
AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def find_images(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (searched recursively) and glob patterns -> sorted unique image paths.

    One string or path is one input, not a sequence of characters. A folder or pattern with no
    image in it raises, as a path that does not exist does."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = [p for p in sorted(path.rglob('*')) if p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise FileNotFoundError(f'no image ({", ".join(sorted(IMAGE_SUFFIXES))}) in the '
                                        f'folder {item}')
            found += images
        elif path.is_file():
            found.append(path)
        else:
            matches = [Path(m) for m in sorted(glob.glob(str(item), recursive=True))]
            images = [m for m in matches if m.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise FileNotFoundError(f'no image matches {str(item)!r}')
            found += images
    return list(dict.fromkeys(found))


def _parse_resize(resize: str) -> tuple[str, tuple[int, ...]]:
    kind, _, value = resize.partition(':')
    try:
        if kind == 'keep' and not value:
            return kind, ()
        if kind == 'short':
            return kind, (int(value),)
        if kind == 'fixed':
            h, w = value.lower().split('x')
            return kind, (int(h), int(w))
    except ValueError:
        pass
    raise ValueError(f"resize must be 'keep', 'short:N' or 'fixed:HxW', got {resize!r}")


def input_size(height: int, width: int, resize: str = 'keep') -> tuple[int, int]:
    """The (H, W) the network sees for an image of ``height`` x ``width`` under ``resize``."""
    kind, value = _parse_resize(resize)
    if kind == 'short':
        scale = value[0] / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    if kind == 'fixed':
        return value
    return height, width


def preprocess(img: Image.Image, resize: str = 'keep') -> torch.Tensor:
    """RGB image -> (3, H, W) float tensor, resized by policy and ImageNet-normalised.

    ``resize``: 'keep' (original size), 'short:N' (shorter side to N, aspect kept) or
    'fixed:HxW'.
    """
    img = img.convert('RGB')
    h, w = input_size(img.height, img.width, resize)
    if (h, w) != (img.height, img.width):
        img = img.resize((w, h), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def build_extractor(config: str | None = None, arch: str | dict | None = None,
                    checkpoint: str | None = None, out_features: Iterable[str] | None = None,
                    window_size: int | tuple[int, ...] | None = None,
                    pretrained_window_sizes: tuple[int, ...] | None = None,
                    device: str | None = None) -> SwinV2Backbone:
    """A SwinV2 backbone in eval mode, from a config, an arch, or a checkpoint alone.

    Args:
        config: an mmdet/mmseg config whose ``model.backbone`` is a ``SwinV2Backbone``.
        arch: a preset name, a dict, or 'auto' (read from the checkpoint).
        checkpoint: weights of any layout :func:`load_pretrained` reads.
        out_features: maps to keep (default: stage1..stage4).
        window_size, pretrained_window_sizes: override the config's / defaults.
        device: default CUDA when available, else CPU.
    """
    kwargs: dict = {}
    if config is not None:
        from mmengine.config import Config
        backbone = Config.fromfile(config).model.backbone.to_dict()
        if backbone.pop('type') != 'SwinV2Backbone':
            raise ValueError(f'{config}: model.backbone is not a SwinV2Backbone')
        backbone.pop('_delete_', None)
        init = backbone.pop('init_cfg', None) or {}
        checkpoint = checkpoint or init.get('checkpoint')
        kwargs.update(backbone)
    sd = None
    if checkpoint is not None:
        sd, _, _ = convert_state_dict(read_checkpoint(checkpoint))
    if arch == 'auto':
        if sd is None:
            raise ValueError("arch='auto' needs a checkpoint to read the architecture from")
        arch = infer_arch(sd)
    if arch is not None:
        kwargs['arch'] = arch
    if window_size is not None:
        kwargs['window_size'] = window_size
    if pretrained_window_sizes is not None:
        kwargs['pretrained_window_sizes'] = pretrained_window_sizes
    kwargs.pop('out_indices', None)
    kwargs['out_features'] = tuple(out_features or FEATURE_NAMES[1:])
    kwargs['drop_path_rate'] = 0.0
    model = SwinV2Backbone(**kwargs)
    if sd is not None:
        load_pretrained(model, sd, strict=True)
    else:
        warnings.warn('no checkpoint: the backbone has random weights, and so have the '
                      'features (pass checkpoint=, or --checkpoint)', stacklevel=2)
        model.init_weights()
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    return model.to(device).eval()


def add_backbone_arguments(parser) -> None:
    """The command-line options of :func:`build_extractor` (``tools/extract_features.py``,
    ``tools/export.py``); :func:`backbone_from_arguments` builds from them."""
    parser.add_argument('--config', help='mmdet/mmseg config with a SwinV2Backbone')
    parser.add_argument('--arch', help="preset name, or 'auto' to read it from --checkpoint")
    parser.add_argument('--checkpoint', help='weights in any layout the package loads')
    parser.add_argument('--window', type=int,
                        help="attention window (default: the config's or the checkpoint's)")
    parser.add_argument('--pretrained-windows', type=int, nargs='+',
                        help='the windows the checkpoint was trained with, per stage')
    parser.add_argument('--stages', nargs='+', default=list(FEATURE_NAMES[1:]),
                        help=f'the maps to write, of {", ".join(FEATURE_NAMES)} (stem: the '
                             'patch embedding; default: the four stages)')


def backbone_from_arguments(args, device: str | None = None) -> SwinV2Backbone:
    """:func:`build_extractor` from :func:`add_backbone_arguments`' options; with none of
    --config, --arch, --checkpoint, SwinV2-T with random weights (and says so)."""
    if not (args.config or args.arch or args.checkpoint):
        args.arch = 'tiny'
        print('no --config/--arch/--checkpoint: SwinV2-T')
    return build_extractor(args.config, args.arch, args.checkpoint, args.stages, args.window,
                           args.pretrained_windows, device)


def pca_picture(image: Image.Image, feats: dict[str, np.ndarray],
                strides: dict[str, int]) -> Image.Image:
    """The image beside each stage's features, the first three principal components of the
    channels shown as RGB, upsampled to the image size, titled with stage name and stride."""
    w, h = image.size
    panels = [('input', image.convert('RGB'))]
    for name, f in feats.items():
        c = f.shape[0]
        x = torch.from_numpy(f.astype(np.float32)).reshape(c, -1).T  # (h*w, C)
        x = x - x.mean(0)
        _, _, v = torch.linalg.svd(x, full_matrices=False)
        rgb = x @ v[:3].T if v.shape[0] >= 3 else x[:, :3]
        lo, hi = rgb.quantile(0.01, dim=0), rgb.quantile(0.99, dim=0)
        rgb = ((rgb - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
        grid = (rgb.T.reshape(-1, *f.shape[1:]) * 255).byte().permute(1, 2, 0).numpy()
        pic = Image.fromarray(np.ascontiguousarray(grid)).resize((w, h), Image.NEAREST)
        panels.append((f'{name}  stride {strides[name]}  {c} ch', pic))
    sheet = Image.new('RGB', (len(panels) * (w + 6), h + 18), 'white')
    draw = ImageDraw.Draw(sheet)
    for i, (title, pic) in enumerate(panels):
        sheet.paste(pic, (i * (w + 6), 18))
        draw.text((i * (w + 6) + 2, 3), title, fill='black')
    return sheet


def _write_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    def write(tmp: str) -> None:
        with open(tmp, 'wb') as f:
            np.savez(f, **arrays, meta=np.array(json.dumps(meta)))
    atomic_write(path, write)


def _write_safetensors(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    from safetensors.numpy import save_file
    atomic_write(path, lambda tmp: save_file(
        {k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp,
        metadata={'meta': json.dumps(meta)}))


WRITERS = {'npz': _write_npz, 'safetensors': _write_safetensors}


@dataclass
class ExtractSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    shapes: dict[str, tuple] = field(default_factory=dict)

    def table(self) -> str:
        rate = len(self.done) / self.seconds if self.seconds else 0.0
        rows = [('images done', len(self.done)), ('skipped (already done)', len(self.skipped)),
                ('failed', len(self.failed)), ('time', f'{self.seconds:.1f} s'),
                ('images/s', f'{rate:.2f}')]
        rows += [(f'{name} shape (last image)', 'x'.join(map(str, shape)))
                 for name, shape in self.shapes.items()]
        width = max(len(r[0]) for r in rows)
        lines = [f'{k:{width}}  {v}' for k, v in rows]
        lines += [f'failed: {path}: {why}' for path, why in self.failed.items()]
        return '\n'.join(lines)


def _output_path(image: Path, root: Path | None, out_dir: Path, suffix: str) -> Path:
    rel = image.relative_to(root) if root and image.is_relative_to(root) else Path(image.name)
    return out_dir / rel.with_suffix(suffix)


def plan_batches(todo: list[tuple[Path, Path]], resize: str,
                 batch_size: int) -> tuple[list[list[int]], dict[str, str]]:
    """Batches of images of one input size (indices into ``todo``; in the order of each size's
    first image; ``batch_size`` at most), read from the images' headers, and the images whose
    header cannot be read. A batch does not depend on how many processes share the work, so
    neither do its features."""
    groups: dict[tuple[int, int], list[int]] = {}
    failed = {}
    for i, (image, _) in enumerate(todo):
        try:
            with Image.open(image) as im:
                size = input_size(im.height, im.width, resize)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            failed[str(image)] = f'{type(e).__name__}: {e}'
            continue
        groups.setdefault(size, []).append(i)
    batches = [g[j:j + batch_size] for g in groups.values()
               for j in range(0, len(g), batch_size)]
    return batches, failed


def _load(image: Path) -> Image.Image:
    with Image.open(image) as im:
        im.load()
        return im.convert('RGB')


def extract_features(model: SwinV2Backbone,
                     images: str | os.PathLike | Iterable[str | os.PathLike],
                     out_dir: str | os.PathLike, fmt: str = 'npz', resize: str = 'keep',
                     fp16: bool = False, batch_size: int = 4, vis: bool = False,
                     single_file: str | os.PathLike | None = None,
                     progress: bool = True, amp: torch.dtype | None = None,
                     shard: tuple[int, int] = (0, 1)) -> ExtractSummary:
    """Run ``model`` over ``images`` (files, folders, glob patterns: :func:`find_images`);
    write each image's pyramid under ``out_dir``.

    Per-image outputs mirror the input folders, named after the image, and ``index.json`` in
    ``out_dir`` maps each image to its file (and lists the failed ones). An image whose output
    exists is skipped (a rerun resumes). An unreadable image is reported and skipped. Every file
    is written atomically. With ``single_file``, everything goes into that one file instead
    (keys ``<index>/<stage>``), written at the end.

    Images of one input size are batched together (:func:`plan_batches`). ``amp``: run under
    autocast to this dtype. ``shard`` = (rank, world size): with several processes (torchrun;
    ``torch.distributed`` initialised), rank 0 plans the batches and each process runs every
    world-size-th one; the files and values are those of one process.
    """
    if fmt not in WRITERS:
        raise ValueError(f'format must be one of {sorted(WRITERS)}, got {fmt!r}')
    _parse_resize(resize)
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f'shard must be (rank, world size) with 0 <= rank < world size, '
                         f'got {shard}')
    if single_file is not None and world > 1:
        raise ValueError('single_file with several processes: each would write the one file; '
                         'extract per-image files (the default), which processes share')
    images = find_images(images)  # a folder or pattern given as one string, too
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parents = {p.parent for p in images}
    root = Path(os.path.commonpath([str(p.resolve()) for p in parents])) if images else None
    device = next(model.parameters()).device
    strides = dict(zip(model.out_features, model.out_strides))
    channels = dict(zip(model.out_features, model.out_channels))
    summary = ExtractSummary()
    collected: dict[str, np.ndarray] = {}
    metas: dict[int, dict] = {}
    start = time.perf_counter()

    targets = [(image, _output_path(image.resolve(), root, out_dir, f'.{fmt}'))
               for image in images]

    def plan():
        todo = [(i, t) for i, t in targets if single_file is not None or not t.exists()]
        return todo, plan_batches(todo, resize, batch_size)
    if world > 1:  # one plan, made before any process writes
        import torch.distributed as dist
        box = [plan() if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        todo, (batches, failed) = box[0]
    else:
        todo, (batches, failed) = plan()
    planned = {str(image) for image, _ in todo}
    summary.skipped = [str(i) for i, _ in targets if str(i) not in planned]
    summary.failed.update(failed if rank == 0 else {})
    mine = batches[rank::world]
    bar = None
    if progress and mine and rank == 0:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(sum(map(len, mine)))
    autocast = torch.autocast(device.type, dtype=amp) if amp is not None else nullcontext()

    def run(batch: list[tuple[int, torch.Tensor, Image.Image]]) -> None:
        x = torch.stack([t for _, t, _ in batch]).to(device)
        with torch.inference_mode(), autocast:
            outs = model(x)
        for j, (k, tensor, pil) in enumerate(batch):
            image, target = todo[k]
            dtype = np.float16 if fp16 else np.float32
            arrays = {name: out[j].float().cpu().numpy().astype(dtype)
                      for name, out in zip(model.out_features, outs)}
            meta = dict(image=str(image), image_size=[pil.height, pil.width],
                        input_size=list(tensor.shape[1:]), resize=resize,
                        stages={n: dict(shape=list(a.shape), stride=strides[n],
                                        channels=channels[n]) for n, a in arrays.items()})
            summary.shapes = {n: a.shape for n, a in arrays.items()}
            if single_file is not None:  # keys by the image's place in the input list
                collected.update({f'{k:06d}/{n}': a for n, a in arrays.items()})
                metas[k] = dict(meta, key=f'{k:06d}')
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                WRITERS[fmt](target, arrays, meta)
            if vis:
                pic = pca_picture(pil.resize(tuple(reversed(tensor.shape[1:]))), arrays, strides)
                pic_path = (Path(single_file).parent / f'{Path(image).stem}_features.png'
                            if single_file is not None else target.with_suffix('.png'))
                atomic_write(pic_path, lambda tmp: pic.save(tmp, format='PNG'))
            summary.done.append(str(image))

    def run_mine() -> None:
        for batch in mine:
            loaded = []
            for k in batch:
                try:
                    pil = _load(todo[k][0])
                except (OSError, UnidentifiedImageError, ValueError) as e:
                    summary.failed[str(todo[k][0])] = f'{type(e).__name__}: {e}'
                    continue
                loaded.append((k, preprocess(pil, resize), pil))
            if loaded:
                run(loaded)
            if bar:
                bar.update(len(batch))
        if bar:
            print()
    if world == 1:
        run_mine()
    else:  # every process's outcome, for the index and the summary, errors included: a
        # process that raised still joins the gather, or the others would wait there forever
        error = None
        try:
            run_mine()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the gather
            error = e
        parts: list = [None] * world
        dist.all_gather_object(parts, (summary.done, summary.failed,
                                       error and f'{type(error).__name__}: {error}'))
        if error is not None:
            raise error
        broken = [f'process {r}: {message}' for r, (_, _, message) in enumerate(parts)
                  if message]
        if broken:
            raise RuntimeError(f'extraction failed in another process ({"; ".join(broken)}); '
                               'the files written so far are whole, and a rerun resumes')
        summary.done = [d for done, _, _ in parts for d in done]
        summary.failed = {k: v for _, failed, _ in parts for k, v in failed.items()}
    order = {str(i): n for n, (i, _) in enumerate(targets)}
    summary.done.sort(key=order.__getitem__)
    if single_file is not None and metas:
        keys = sorted(metas)
        WRITERS[fmt](Path(single_file), collected, dict(images=[metas[k] for k in keys]))
    elif single_file is None and rank == 0:
        present = set(summary.done) | set(summary.skipped)
        index = dict(images={str(i): str(t.relative_to(out_dir)) for i, t in targets
                             if str(i) in present},
                     failed=dict(sorted(summary.failed.items())))
        atomic_write(out_dir / 'index.json',
                     lambda tmp: Path(tmp).write_text(json.dumps(index, indent=1)))
    summary.seconds = time.perf_counter() - start
    return summary
