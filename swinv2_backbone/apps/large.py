"""Inference on large images with any mmdet or mmseg model: the whole image in one forward where
the memory allows it, overlapping tiles where it does not.

- Detection: each tile's detections move to image coordinates; detections of one object seen
  by two tiles (the same class, their masks, or boxes, agreeing where both tiles look) are
  merged into one, with the union of their boxes and masks and the highest score.
- Segmentation: each crop's logits are weighted by a ramp falling to zero at the crop's borders
  inside the image, summed, and the argmax taken, one band of rows at a time.
- Memory: a whole-image forward's peak is fitted, linear in pixels, to two forwards on crops
  of the image itself; the process's own peak is measured (``/proc`` on CPU, the allocator on
  CUDA).

The image is read one crop at a time: an uncompressed TIFF straight from disk (memory-mapped),
other formats decoded once.
"""
from __future__ import annotations

import ctypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

__all__ = ['Detection', 'LargeImage', 'LargeImageInferencer', 'LargeResult', 'blend_weights',
           'detections_to_coco', 'draw', 'merge_detections', 'peak_memory',
           'tile_grid', 'write_result']

GIB = 2**30


# --------------------------------------------------------------------------- reading
class LargeImage:
    """An image read crop by crop: ``read(y, x, h, w) -> (h, w, 3) uint8 RGB``.

    An uncompressed, contiguous TIFF is memory-mapped (tifffile), so only the crops read are
    ever in memory; anything else PIL reads (PNG, JPEG, compressed TIFF) is decoded once."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f'image not found: {path}')
        self._array = self._memmap() if self.path.suffix.lower() in ('.tif', '.tiff') else None
        if self._array is not None:
            self.height, self.width = self._array.shape[:2]
            self._image = None
            return
        Image.MAX_IMAGE_PIXELS = None  # a large image is what this reader is for
        try:
            self._image = Image.open(self.path)
        except Exception as e:  # noqa: BLE001 - PIL raises several types for unreadable files
            raise ValueError(f'cannot read {path} as an image: {e}') from e
        self.width, self.height = self._image.size

    def _memmap(self) -> np.ndarray | None:
        try:
            import tifffile
            array = tifffile.memmap(str(self.path), mode='r')
        except Exception:  # noqa: BLE001 - compressed, tiled or no tifffile: PIL decodes it
            return None
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3 or array.dtype != np.uint8 or array.shape[2] not in (1, 3, 4):
            return None
        return array

    @property
    def memory_mapped(self) -> bool:
        return self._array is not None

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """(h, w, 3) uint8 RGB pixels of the crop at (y, x)."""
        if self._array is not None:
            crop = np.asarray(self._array[y:y + h, x:x + w])
            return np.repeat(crop, 3, 2) if crop.shape[2] == 1 else np.ascontiguousarray(
                crop[..., :3])
        if self._image.mode != 'RGB':
            self._image = self._image.convert('RGB')
        return np.asarray(self._image.crop((x, y, x + w, y + h)))

    def thumbnail(self, longest: int) -> Image.Image:
        """The image scaled so that its longer side is at most ``longest`` pixels."""
        scale = min(1.0, longest / max(self.height, self.width))
        size = (max(1, round(self.width * scale)), max(1, round(self.height * scale)))
        if self._array is None:
            return self._image.convert('RGB').resize(size, Image.BILINEAR)
        step = max(1, int(1 / scale))  # a strided read of the map, then the exact size
        strided = np.ascontiguousarray(self._array[::step, ::step])
        if strided.shape[2] == 1:
            strided = np.repeat(strided, 3, 2)
        return Image.fromarray(strided[..., :3]).resize(size, Image.BILINEAR)


# --------------------------------------------------------------------------- tiling
def _starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one side: a stride of ``tile * (1 - overlap)``, the last tile flush
    with the end, one tile when it covers the side."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - overlap)))
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tile_grid(height: int, width: int, tile: tuple[int, int],
              overlap: float) -> list[tuple[int, int, int, int]]:
    """(y, x, h, w) of tiles covering a height x width image, row by row; neighbours overlap by
    ``overlap`` of a tile (more where the last tile is flush with the edge)."""
    if not 0 <= overlap < 1:
        raise ValueError(f'overlap must be in [0, 1), got {overlap}')
    if min(tile) < 1:
        raise ValueError(f'tile must be positive, got {tile}')
    th, tw = min(tile[0], height), min(tile[1], width)
    return [(y, x, th, tw) for y in _starts(height, th, overlap)
            for x in _starts(width, tw, overlap)]


def blend_weights(tile: tuple[int, int, int, int], height: int, width: int,
                  ramp: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 weights of a crop's logits: 1 inside, falling linearly over ``ramp``
    pixels to near 0 at each crop border that lies inside the image (a border on the image's
    own edge keeps weight 1: nothing else covers it)."""
    y, x, h, w = tile

    def side(start: int, size: int, total: int, r: int) -> np.ndarray:
        d = np.arange(size, dtype=np.float32)
        weight = np.ones(size, np.float32)
        r = max(1, r)
        if start > 0:
            weight = np.minimum(weight, (d + 0.5) / r)
        if start + size < total:
            weight = np.minimum(weight, (size - d - 0.5) / r)
        return weight

    return np.outer(side(y, h, height, ramp[0]), side(x, w, width, ramp[1]))


# --------------------------------------------------------------------------- detections
@dataclass
class Detection:
    """One detection in image coordinates: ``box`` (x1, y1, x2, y2), and where it has a mask,
    ``mask`` (h, w) bool placed at ``origin`` (y, x); ``tile`` is the tile it came from."""
    box: np.ndarray
    score: float
    label: int
    mask: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)
    tile: int = -1

    def mask_in(self, region: tuple[int, int, int, int]) -> np.ndarray:
        """The mask over ``region`` (y0, x0, y1, x1), zeros where it has none."""
        y0, x0, y1, x1 = region
        out = np.zeros((y1 - y0, x1 - x0), bool)
        my, mx = self.origin
        mh, mw = self.mask.shape
        ty0, tx0, ty1, tx1 = max(y0, my), max(x0, mx), min(y1, my + mh), min(x1, mx + mw)
        if ty1 > ty0 and tx1 > tx0:
            inside = self.mask[ty0 - my:ty1 - my, tx0 - mx:tx1 - mx]
            out[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0] = inside
        return out


def _clip(box: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    y0, x0, y1, x1 = region
    return np.array([max(box[0], x0), max(box[1], y0), min(box[2], x1), min(box[3], y1)])


def _inside(box: np.ndarray, region: tuple[int, int, int, int]) -> bool:
    """Whether the box reaches into the region (y0, x0, y1, x1)."""
    clipped = _clip(box, region)
    return bool(clipped[2] > clipped[0] and clipped[3] > clipped[1])


def _agree(a: Detection, b: Detection, region: tuple[int, int, int, int]) -> float:
    """How far two detections agree inside ``region``, the part of the image both their tiles
    see: the IoU of their masks there where both have one; else their boxes clipped to it,
    intersection over the smaller (the box of an object's part is narrower than the object's
    box where the part ends, a triangle's tip for one)."""
    ca, cb = _clip(a.box, region), _clip(b.box, region)
    w = min(ca[2], cb[2]) - max(ca[0], cb[0])
    h = min(ca[3], cb[3]) - max(ca[1], cb[1])
    if w <= 0 or h <= 0:
        return 0.0
    if a.mask is not None and b.mask is not None:
        ma, mb = a.mask_in(region), b.mask_in(region)
        union = np.count_nonzero(ma | mb)
        return np.count_nonzero(ma & mb) / union if union else 0.0
    smaller = min((ca[2] - ca[0]) * (ca[3] - ca[1]), (cb[2] - cb[0]) * (cb[3] - cb[1]))
    return float(w * h / smaller)


def _overlap(t: tuple[int, int, int, int], u: tuple[int, int, int, int]):
    y0, x0 = max(t[0], u[0]), max(t[1], u[1])
    y1, x1 = min(t[0] + t[2], u[0] + u[2]), min(t[1] + t[3], u[1] + u[3])
    return (y0, x0, y1, x1) if y1 > y0 and x1 > x0 else None


def merge_detections(detections: list[Detection], tiles: list[tuple[int, int, int, int]],
                     iou: float = 0.5) -> list[Detection]:
    """One detection per object from the detections of overlapping tiles.

    Two detections from different tiles are one object when they have the same label and
    agree (:func:`_agree` >= ``iou``) where both tiles look: there both saw the same pixels,
    whether the object was whole in one tile and cut in the other, or cut in both. Each group
    of such detections becomes one with the union of their boxes and masks and the highest
    score, so an object cut by a tile border is reported once, whole.

    First, within each tile, a detection lying mostly (the share ``iou`` of its own mask, or
    box) inside a higher-scoring one of its class is taken for a part of it and dropped: the
    model saw both with the same pixels around them, and NMS, which compares with the union,
    keeps a half-object box inside a whole one."""
    detections = _drop_parts(detections, iou)
    by_tile: dict[int, list[int]] = {}
    for i, det in enumerate(detections):
        by_tile.setdefault(det.tile, []).append(i)
    parent = list(range(len(detections)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for ti in range(len(tiles)):
        for tj in range(ti + 1, len(tiles)):
            region = _overlap(tiles[ti], tiles[tj])
            if region is None:
                continue
            near = [[k for k in by_tile.get(t, ()) if _inside(detections[k].box, region)]
                    for t in (ti, tj)]
            for a in near[0]:
                for b in near[1]:
                    da, db = detections[a], detections[b]
                    if da.label == db.label and root(a) != root(b) and \
                            _agree(da, db, region) >= iou:
                        parent[root(b)] = root(a)
    groups: dict[int, list[Detection]] = {}
    for i, det in enumerate(detections):
        groups.setdefault(root(i), []).append(det)
    return [_union(group) for group in groups.values()]


def _inside_share(a: Detection, b: Detection) -> float:
    """How much of the smaller of two detections lies inside the other: of its mask where
    both have one, else of its box."""
    w = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
    h = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    if w <= 0 or h <= 0:
        return 0.0
    if a.mask is not None and b.mask is not None:
        y0, x0 = min(a.origin[0], b.origin[0]), min(a.origin[1], b.origin[1])
        y1 = max(a.origin[0] + a.mask.shape[0], b.origin[0] + b.mask.shape[0])
        x1 = max(a.origin[1] + a.mask.shape[1], b.origin[1] + b.mask.shape[1])
        ma, mb = a.mask_in((y0, x0, y1, x1)), b.mask_in((y0, x0, y1, x1))
        smaller = min(np.count_nonzero(ma), np.count_nonzero(mb))
        return np.count_nonzero(ma & mb) / smaller if smaller else 0.0
    areas = [(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in (a, b)]
    return float(w * h / min(areas)) if min(areas) > 0 else 0.0


def _drop_parts(detections: list[Detection], share: float) -> list[Detection]:
    """Per tile, drop each detection that lies ``share`` or more inside a higher-scoring one
    of its class (:func:`_inside_share`)."""
    by_tile: dict[int, list[int]] = {}
    for i, det in enumerate(detections):
        by_tile.setdefault(det.tile, []).append(i)
    dropped = set()
    for members in by_tile.values():
        members.sort(key=lambda i: -detections[i].score)
        for n, a in enumerate(members):
            if a in dropped:
                continue
            for b in members[n + 1:]:
                if b not in dropped and detections[a].label == detections[b].label and \
                        _inside_share(detections[a], detections[b]) >= share:
                    dropped.add(b)
    return [d for i, d in enumerate(detections) if i not in dropped]


def _union(group: list[Detection]) -> Detection:
    if len(group) == 1:
        return group[0]
    boxes = np.stack([d.box for d in group])
    box = np.concatenate([boxes[:, :2].min(0), boxes[:, 2:].max(0)])
    best = max(group, key=lambda d: d.score)
    if any(d.mask is None for d in group):
        return Detection(box, best.score, best.label, tile=best.tile)
    y0 = min(d.origin[0] for d in group)
    x0 = min(d.origin[1] for d in group)
    y1 = max(d.origin[0] + d.mask.shape[0] for d in group)
    x1 = max(d.origin[1] + d.mask.shape[1] for d in group)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for d in group:
        mask |= d.mask_in((y0, x0, y1, x1))
    return Detection(box, best.score, best.label, mask, (y0, x0), best.tile)


def _tight_mask(mask: np.ndarray, y: int, x: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A tile-sized bool mask cut to its pixels' bounding box, and that box's origin in the
    image ((0, 0)-sized when empty)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return np.zeros((0, 0), bool), (y, x)
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return np.ascontiguousarray(crop), (y + int(rows[0]), x + int(cols[0]))


def _rle(det: Detection, height: int, width: int) -> dict:
    """COCO RLE of a detection's mask in the whole image, counted from its crop: the columns
    left and right of it add one run of zeros each (COCO counts column by column)."""
    from pycocotools import mask as mask_utils
    y0, x0 = det.origin
    h, w = det.mask.shape
    columns = np.zeros((height, w), bool)
    columns[y0:y0 + h] = det.mask
    flat = columns.ravel(order='F')
    if not flat.any():
        runs = [height * width]
    else:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
        if flat[0]:  # runs start with zeros
            runs = [0] + runs
        runs[0] += height * x0
        trailing = height * (width - x0 - w)
        if flat[-1] and trailing:
            runs.append(trailing)
        elif not flat[-1]:
            runs[-1] += trailing
    rle = mask_utils.frPyObjects({'counts': runs, 'size': [height, width]}, height, width)
    return {'size': [height, width], 'counts': rle['counts'].decode()}


def detections_to_coco(detections: list[Detection], height: int, width: int,
                       classes: list[str] | None = None) -> list[dict]:
    """COCO results entries (``bbox`` as x, y, w, h; ``segmentation`` as RLE where a mask
    exists; ``category_id`` = label + 1, ``category`` its name), highest score first."""
    out = []
    for det in sorted(detections, key=lambda d: -d.score):
        x1, y1, x2, y2 = (float(v) for v in det.box)
        entry = dict(bbox=[round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                     score=round(float(det.score), 5), category_id=int(det.label) + 1)
        if classes is not None and det.label < len(classes):
            entry['category'] = classes[det.label]
        if det.mask is not None:
            entry['segmentation'] = _rle(det, height, width)
        out.append(entry)
    return out


# --------------------------------------------------------------------------- memory
def _libc_trim() -> None:
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_bytes(field_: str) -> int:
    text = Path('/proc/self/status').read_text()
    return int(re.search(rf'{field_}:\s+(\d+)', text).group(1)) * 1024


class peak_memory:
    """Measures the peak bytes a block of code adds: ``with peak_memory(device) as m: ...``,
    then ``m.peak`` (the process's or the CUDA allocator's high-water mark during the block)
    and ``m.added`` (that peak less what was in use when it began). On CPU, ``trim`` first
    hands the memory glibc keeps free back to the system, so that the start is what is in
    use."""

    def __init__(self, device: str | torch.device = 'cpu', trim: bool = True) -> None:
        self.device = torch.device(device)
        self.trim = trim
        self.peak = self.added = 0

    def __enter__(self) -> 'peak_memory':
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            if self.trim:
                _libc_trim()
            Path('/proc/self/clear_refs').write_text('5')  # resets VmHWM to VmRSS
            self._start = _status_bytes('VmRSS')
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = _status_bytes('VmHWM')
        self.added = self.peak - self._start


# --------------------------------------------------------------------------- inference
@dataclass
class LargeResult:
    """What :meth:`LargeImageInferencer.__call__` returns for one image. ``mode`` is 'whole' or
    'sliced'; ``detections`` (mmdet) or ``labels`` ((H, W) int class map, mmseg);
    ``estimate_gib`` the whole forward's fitted peak, ``peak_gib`` the measured one;
    ``tile_boxes`` the (y, x, h, w) of each forward's crop."""
    path: Path
    height: int
    width: int
    mode: str
    tiles: int
    detections: list[Detection] | None = None
    labels: np.ndarray | None = None
    estimate_gib: float = 0.0
    peak_gib: float = 0.0
    seconds: float = 0.0
    tile_boxes: list = field(default_factory=list)


class LargeImageInferencer:
    """Runs an mmdet or mmseg model on images of any size, whole or in tiles.

    Args:
        model: the host's model (``hosts.runner.load_model``), in eval mode.
        host: 'mmdet' or 'mmseg'.
        tile: (h, w) of a tile, at the image's own scale (no resizing).
        overlap: neighbouring tiles' overlap, a fraction of a tile.
        max_memory: GiB the whole forward may take; above it (by the fitted estimate) the
            image is tiled. None: always whole; 0: always tiled.
        batch: tiles per forward.
        score_thr: detections scoring below it are dropped before merging.
        merge_iou: :func:`merge_detections`' agreement threshold.
        progress: called with (done, total) tiles.

    An mmseg model's ``test_cfg.mode`` is set to 'whole': the crops are this class's.
    """

    def __init__(self, model: torch.nn.Module, host: str, tile: tuple[int, int] = (512, 512),
                 overlap: float = 0.2, max_memory: float | None = 16.0, batch: int = 1,
                 score_thr: float = 0.05, merge_iou: float = 0.5,
                 progress: Callable[[int, int], None] | None = None) -> None:
        if host not in ('mmdet', 'mmseg'):
            raise ValueError(f"host must be 'mmdet' or 'mmseg', got {host!r}")
        if batch < 1:
            raise ValueError(f'batch must be >= 1, got {batch}')
        tile_grid(tile[0], tile[1], tile, overlap)  # checks tile and overlap
        self.model, self.host, self.tile, self.overlap = model.eval(), host, tuple(tile), overlap
        self.max_memory, self.batch, self.score_thr = max_memory, batch, score_thr
        self.merge_iou, self.progress = merge_iou, progress
        self.device = next(model.parameters()).device
        if host == 'mmseg':  # the crops are ours: the segmentor runs each whole
            from mmengine.config import ConfigDict
            model.test_cfg = ConfigDict(dict(model.test_cfg or {}, mode='whole'))

    # one forward of same-sized crops -> the host's data samples
    def _forward(self, crops: list[np.ndarray]) -> list:
        if self.host == 'mmdet':
            from mmdet.structures import DetDataSample as Sample
        else:
            from mmseg.structures import SegDataSample as Sample
        inputs, samples = [], []
        for crop in crops:  # BGR, as the hosts' LoadImageFromFile gives
            inputs.append(torch.from_numpy(np.ascontiguousarray(crop[..., ::-1])).permute(2, 0, 1))
            h, w = crop.shape[:2]
            samples.append(Sample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                                scale_factor=(1.0, 1.0))))
        with torch.no_grad():
            return self.model.test_step(dict(inputs=inputs, data_samples=samples))

    def estimate_whole_gib(self, image: LargeImage) -> float:
        """GiB a whole-image forward adds, fitted (a + b * pixels) to forwards on two crops of
        the image: a tile, and a crop of twice its sides (or the image, if smaller)."""
        sizes = []
        for scale in (1, 2):
            h, w = (min(image.height, t * scale) for t in self.tile)
            if (h, w) not in [s for s, _ in sizes]:
                crop = image.read((image.height - h) // 2, (image.width - w) // 2, h, w)
                with peak_memory(self.device) as m:
                    self._forward([crop])
                sizes.append(((h, w), m.added))
        if len(sizes) == 1:
            return sizes[0][1] / GIB
        ((h1, w1), m1), ((h2, w2), m2) = sizes
        per_pixel = max(0.0, (m2 - m1) / (h2 * w2 - h1 * w1))
        base = max(0.0, m1 - per_pixel * h1 * w1)
        return (base + per_pixel * image.height * image.width) / GIB

    def __call__(self, path: str | os.PathLike) -> LargeResult:
        import time
        start = time.perf_counter()
        image = LargeImage(path)
        H, W = image.height, image.width
        whole_fits = image.height <= self.tile[0] and image.width <= self.tile[1]
        estimate = 0.0
        if self.max_memory is None:
            whole = True
        elif self.max_memory <= 0 or whole_fits:
            whole = whole_fits
        else:
            estimate = self.estimate_whole_gib(image)
            whole = estimate <= self.max_memory
        with peak_memory(self.device) as m:
            if whole:
                tiles = [(0, 0, H, W)]
            else:
                tiles = tile_grid(H, W, self.tile, self.overlap)
            result = LargeResult(Path(path), H, W, 'whole' if whole else 'sliced', len(tiles),
                                 estimate_gib=estimate, tile_boxes=tiles)
            if self.host == 'mmdet':
                result.detections = self._detect(image, tiles)
            else:
                result.labels = self._segment(image, tiles)
        result.peak_gib = m.peak / GIB
        result.seconds = time.perf_counter() - start
        return result

    def _batches(self, image: LargeImage, tiles: list) -> Iterator[tuple[int, tuple, object]]:
        """(tile index, tile, the host's data sample) of every tile, ``batch`` per forward."""
        for i in range(0, len(tiles), self.batch):
            chunk = tiles[i:i + self.batch]
            samples = self._forward([image.read(*t) for t in chunk])
            if self.progress:
                self.progress(min(i + self.batch, len(tiles)), len(tiles))
            yield from zip(range(i, i + len(chunk)), chunk, samples)

    def _detect(self, image: LargeImage, tiles: list) -> list[Detection]:
        detections = []
        for index, (y, x, _h, _w), sample in self._batches(image, tiles):
            pred = sample.pred_instances
            keep = pred.scores >= self.score_thr
            boxes = pred.bboxes[keep].cpu().numpy().astype(np.float64) + (x, y, x, y)
            scores, labels = pred.scores[keep].cpu().numpy(), pred.labels[keep].cpu().numpy()
            masks = pred.masks[keep].cpu().numpy() if 'masks' in pred else None
            for k in range(len(scores)):
                mask, origin = (None, (0, 0)) if masks is None else \
                    _tight_mask(masks[k].astype(bool), y, x)
                detections.append(Detection(boxes[k], float(scores[k]), int(labels[k]), mask,
                                            origin, index))
        if len(tiles) == 1:
            return detections
        return merge_detections(detections, tiles, self.merge_iou)

    def _segment(self, image: LargeImage, tiles: list) -> np.ndarray:
        """Blended crops' argmax, one band of tile rows at a time: the running sums cover one
        tile's height of the image, (classes, tile h, W) float32."""
        H, W = image.height, image.width
        labels = np.zeros((H, W), np.int32)
        ramp = tuple(max(1, int(t * self.overlap)) for t in self.tile)
        band_h = tiles[0][2]
        acc, top = None, 0
        for _index, (y, x, h, w), sample in self._batches(image, tiles):
            logits = sample.seg_logits.data.float().cpu()  # (C, h, w)
            if acc is None:
                acc = torch.zeros(logits.shape[0], band_h, W)
            if y > top:  # rows above y are done: every crop over them has been added
                done = y - top
                labels[top:y] = acc[:, :done].argmax(0).numpy()
                acc = torch.cat([acc[:, done:], torch.zeros_like(acc[:, :done])], 1)
                top = y
            weight = torch.from_numpy(blend_weights((y, x, h, w), H, W, ramp))
            acc[:, y - top:y - top + h, x:x + w] += logits * weight
        labels[top:] = acc[:, :H - top].argmax(0).numpy()
        return labels


# --------------------------------------------------------------------------- model and outputs
PALETTE = np.array([(230, 80, 60), (60, 190, 90), (70, 110, 240), (240, 200, 40),
                    (170, 70, 200), (40, 200, 210), (250, 140, 30), (140, 140, 140)], np.uint8)


def draw(result: LargeResult, image: LargeImage, longest: int = 2048) -> Image.Image:
    """The image scaled to ``longest`` pixels with the predictions drawn: detections as masks
    hatched in white, outlined, and boxes, in their class colours darkened; a segmentation as
    its classes blended in. The tiles' borders are dotted in yellow."""
    from PIL import ImageDraw
    thumb = image.thumbnail(longest)
    sy, sx = thumb.height / result.height, thumb.width / result.width
    if result.labels is not None:
        small = np.asarray(Image.fromarray(result.labels.astype(np.int32)).resize(
            thumb.size, Image.NEAREST))
        colours = PALETTE[small % len(PALETTE)]
        out = Image.fromarray((0.5 * np.asarray(thumb) + 0.5 * colours).astype(np.uint8))
    else:
        out = _draw_detections(thumb, result.detections, sy, sx)
    pen = ImageDraw.Draw(out)
    if len(result.tile_boxes) > 1:
        for y, x, h, w in result.tile_boxes:
            for edge in ([(x, y), (x + w, y)], [(x, y + h), (x + w, y + h)],
                         [(x, y), (x, y + h)], [(x + w, y), (x + w, y + h)]):
                (x0, y0), (x1, y1) = ((px * sx, py * sy) for px, py in edge)
                steps = int(max(abs(x1 - x0), abs(y1 - y0)) // 6)
                for k in range(0, steps, 2):  # dotted: every other 6 px
                    t0, t1 = k / max(steps, 1), (k + 1) / max(steps, 1)
                    pen.line([(x0 + (x1 - x0) * t0, y0 + (y1 - y0) * t0),
                              (x0 + (x1 - x0) * t1, y0 + (y1 - y0) * t1)],
                             fill=(250, 220, 40))
    return out


def _draw_detections(thumb: Image.Image, detections: list[Detection], sy: float,
                     sx: float) -> Image.Image:
    from PIL import ImageDraw
    canvas = np.asarray(thumb).copy()
    for det in detections:
        if det.mask is None or not det.mask.size:
            continue
        y0, x0 = det.origin
        h, w = det.mask.shape
        ty, tx = int(y0 * sy), int(x0 * sx)
        rows = (np.arange(ty, int(np.ceil((y0 + h) * sy))) / sy).astype(int) - y0
        cols = (np.arange(tx, int(np.ceil((x0 + w) * sx))) / sx).astype(int) - x0
        small = det.mask[np.ix_(rows.clip(0, h - 1), cols.clip(0, w - 1))]
        region = canvas[ty:ty + small.shape[0], tx:tx + small.shape[1]]
        small = small[:region.shape[0], :region.shape[1]]
        inner = small.copy()  # the mask less its 1-pixel rim
        inner[1:] &= small[:-1]
        inner[:-1] &= small[1:]
        inner[:, 1:] &= small[:, :-1]
        inner[:, :-1] &= small[:, 1:]
        rr, cc = np.indices(small.shape)
        stripes = inner & ((rr + cc + ty + tx) // 3 % 2 == 0)
        region[stripes] = (0.4 * region[stripes] + 0.6 * 255).astype(np.uint8)
        region[small & ~inner] = PALETTE[det.label % len(PALETTE)] // 2
    out = Image.fromarray(canvas)
    pen = ImageDraw.Draw(out)
    for det in detections:
        x1, y1, x2, y2 = det.box
        pen.rectangle([x1 * sx - 2, y1 * sy - 2, x2 * sx + 2, y2 * sy + 2],
                      outline=tuple(int(c) for c in PALETTE[det.label % len(PALETTE)] // 2))
    return out


def write_result(result: LargeResult, out_dir: str | os.PathLike,
                 classes: list[str] | None = None, vis: bool = False) -> list[Path]:
    """Write ``STEM.json`` (detections as COCO results, with the image's size, mode, tiles,
    estimate and peak) or ``STEM.png`` (class indices, 8 or 16 bits), and with ``vis``
    ``STEM_vis.jpg``; each atomically. Returns the paths written."""
    import json

    from ..files import atomic_write
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem, written = result.path.stem, []
    info = dict(image=str(result.path), height=result.height, width=result.width,
                mode=result.mode, tiles=result.tiles, seconds=round(result.seconds, 2),
                estimate_gib=round(result.estimate_gib, 3), peak_gib=round(result.peak_gib, 3),
                classes=classes)
    if result.detections is not None:
        info['detections'] = detections_to_coco(result.detections, result.height, result.width,
                                                classes)
        path = out_dir / f'{stem}.json'
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(info)))
    else:
        wide = result.labels.max(initial=0) > 255
        labels = result.labels.astype(np.uint16 if wide else np.uint8)
        path = out_dir / f'{stem}.png'
        atomic_write(path, lambda tmp: Image.fromarray(labels).save(tmp, format='PNG'))
        info_path = out_dir / f'{stem}.json'
        atomic_write(info_path, lambda tmp: Path(tmp).write_text(json.dumps(info)))
        written.append(info_path)
    written.insert(0, path)
    if vis:
        picture = draw(result, LargeImage(result.path))
        vis_path = out_dir / f'{stem}_vis.jpg'
        atomic_write(vis_path, lambda tmp: picture.save(tmp, format='JPEG', quality=90))
        written.append(vis_path)
    return written
