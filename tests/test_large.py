"""Large-image inference (swinv2_backbone.apps.large, tools/infer_large.py): tiles, the merge
of detections across tile borders, RLE masks, blended segmentation, every configured family
whole and sliced, and the tool's command line. The oldest environment runs the pure parts (tiles,
merging, RLE, blend weights, reading); the models and the tool run in the latest (CI time)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from devkit.synthetic import _image
from swinv2_backbone.apps.large import (Detection, LargeImage, LargeImageInferencer,
                                        _tight_mask, blend_weights, detections_to_coco,
                                        merge_detections, tile_grid)
from swinv2_backbone.hosts.runner import load_model

ROOT = Path(__file__).resolve().parent.parent


def test_tiles_cover_the_image_with_the_overlap_and_stay_inside():
    tiles = tile_grid(300, 500, (128, 160), 0.25)
    cover = np.zeros((300, 500), int)
    for y, x, h, w in tiles:
        assert (h, w) == (128, 160) and y + h <= 300 and x + w <= 500
        cover[y:y + h, x:x + w] += 1
    assert cover.min() >= 1
    ys, xs = sorted({t[0] for t in tiles}), sorted({t[1] for t in tiles})
    assert ys == [0, 96, 172] and xs == [0, 120, 240, 340]  # stride 96 / 120, last flush
    assert tile_grid(90, 100, (128, 160), 0.2) == [(0, 0, 90, 100)]
    with pytest.raises(ValueError, match='overlap'):
        tile_grid(300, 500, (128, 128), 1.0)


def _objects(size: int = 320, seed: int = 3):
    """Shapes in a size x size image: [(label, full-image bool mask)]."""
    rng = np.random.default_rng(seed)
    _img, instances, _seg, inst = _image(rng, size, 0, radius=(10, 24), grid=64)
    return [(kind, inst == i + 1) for i, (kind, _poly) in enumerate(instances)]


def _bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _seen_by_tiles(objects, tiles, with_masks: bool) -> list[Detection]:
    """What a perfect detector reports in each tile: every object's visible part, its box
    the part's box (an object cut by the tile border gives a cut box)."""
    detections = []
    for t, (y, x, h, w) in enumerate(tiles):
        for k, (label, mask) in enumerate(objects):
            part = np.zeros_like(mask)
            part[y:y + h, x:x + w] = mask[y:y + h, x:x + w]
            if not part.any():
                continue
            crop, origin = _tight_mask(part[y:y + h, x:x + w], y, x)
            detections.append(Detection(_bbox(part), 0.5 + 0.01 * t, label,
                                        crop if with_masks else None, origin, t))
    return detections


@pytest.mark.parametrize('with_masks', [True, False], ids=['masks', 'boxes'])
def test_an_object_cut_by_tile_borders_is_reported_once_whole(with_masks):
    objects = _objects()
    tiles = tile_grid(320, 320, (96, 96), 0.25)
    seen = _seen_by_tiles(objects, tiles, with_masks)
    cut = sum(1 for _, m in objects
              if sum(1 for (y, x, h, w) in tiles if m[y:y + h, x:x + w].any()) > 1)
    assert cut >= 15 and len(seen) >= len(objects) + 30  # the set has the real problem
    merged = merge_detections(seen, tiles)
    assert len(merged) == len(objects)
    for det in merged:  # each is one object's whole box, and with masks its whole mask
        k = max(range(len(objects)), key=lambda i: objects[i][1][
            int(det.box[1]):int(det.box[3]), int(det.box[0]):int(det.box[2])].sum())
        label, mask = objects[k]
        assert det.label == label
        np.testing.assert_array_equal(det.box, _bbox(mask))
        if with_masks:
            np.testing.assert_array_equal(det.mask_in((0, 0, 320, 320)), mask)


def test_neighbours_of_one_class_in_the_overlap_stay_apart():
    # two squares of one class side by side, both cut by the same tile border
    a, b = np.zeros((100, 200), bool), np.zeros((100, 200), bool)
    a[40:60, 90:99] = True
    b[40:60, 101:110] = True
    tiles = [(0, 0, 100, 110), (0, 90, 100, 110)]
    seen = _seen_by_tiles([(0, a), (0, b)], tiles, with_masks=True)
    merged = merge_detections(seen, tiles)
    assert sorted(tuple(d.box) for d in merged) == [tuple(_bbox(a)), tuple(_bbox(b))]


@pytest.mark.parametrize('with_masks', [True, False], ids=['masks', 'boxes'])
def test_a_lower_scoring_part_of_a_detection_in_its_tile_is_dropped(with_masks):
    # NMS keeps a half-object box inside a whole one (IoU 0.5): the merge does not
    whole, part, other = (np.zeros((100, 200), bool) for _ in range(3))
    whole[20:60, 20:60] = True
    part[20:60, 20:40] = True
    other[20:60, 62:102] = True  # a neighbour of the same class, touching the whole's box
    dets = []
    for mask, score in ((whole, 0.9), (part, 0.6), (other, 0.8)):
        crop, origin = _tight_mask(mask, 0, 0)
        dets.append(Detection(_bbox(mask), score, 1, crop if with_masks else None, origin, 0))
    merged = merge_detections(dets, [(0, 0, 100, 200)])
    assert sorted(d.score for d in merged) == [0.8, 0.9]


def test_rle_of_a_mask_crop_is_pycocotools_rle_of_the_whole_mask():
    from pycocotools import mask as mask_utils
    rng = np.random.default_rng(0)
    for origin, shape in [((5, 7), (9, 4)), ((0, 0), (30, 40)), ((21, 36), (9, 4))]:
        full = np.zeros((30, 40), bool)
        crop = rng.random(shape) > 0.4
        full[origin[0]:origin[0] + shape[0], origin[1]:origin[1] + shape[1]] = crop
        det = Detection(np.array([0, 0, 1, 1.0]), 0.9, 2, crop, origin)
        (entry,) = detections_to_coco([det], 30, 40, ['a', 'b', 'c'])
        assert entry['category_id'] == 3 and entry['category'] == 'c'
        ours = dict(entry['segmentation'], counts=entry['segmentation']['counts'].encode())
        np.testing.assert_array_equal(mask_utils.decode(ours), full)
        assert ours['counts'] == mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))[
            'counts']


def test_blend_weights_fall_off_only_at_borders_inside_the_image():
    w = blend_weights((0, 40, 64, 64), 64, 200, (16, 16))
    assert w.shape == (64, 64)
    np.testing.assert_allclose(w[:, 20], 1.0)  # top and bottom are the image's edges
    assert w[10, 0] < 0.05 and w[10, -1] < 0.05 and w[10, 16] == 1.0


def test_large_image_reads_crops_of_png_and_uncompressed_tiff_from_disk(tmp_path):
    tifffile = pytest.importorskip('tifffile')
    pixels = np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / 'a.png')
    tifffile.imwrite(tmp_path / 'a.tif', pixels)
    tifffile.imwrite(tmp_path / 'z.tif', pixels, compression='zlib')
    for name, mapped in (('a.png', False), ('a.tif', True), ('z.tif', False)):
        image = LargeImage(tmp_path / name)
        assert image.memory_mapped == mapped and (image.height, image.width) == (70, 90)
        np.testing.assert_array_equal(image.read(10, 20, 30, 40), pixels[10:40, 20:60])
    (tmp_path / 'bad.png').write_bytes(b'not an image')
    with pytest.raises(ValueError, match='cannot read'):
        LargeImage(tmp_path / 'bad.png')


# every family the configs use; the demo configs are the small ones, Cascade and RetinaNet
# have only full-size configs (SwinV2-T)
FAMILIES = {
    'mask-rcnn': ('configs/demo/mask-rcnn_swinv2-nano_shapes.py', True),
    'cascade': ('configs/mmdet/cascade-mask-rcnn_swinv2-t-w16_fpn_ms-3x_coco.py', True),
    'retinanet': ('configs/mmdet/retinanet_swinv2-t-w16_fpn_1x_coco.py', False),
    'htc': ('configs/demo/htc_swinv2-nano_shapes.py', True),
    'dino': ('configs/demo/dino_swinv2-nano_shapes.py', False),
    'mask2former-instance': ('configs/demo/mask2former_swinv2-nano_shapes.py', True),
    'upernet': ('configs/demo/upernet_swinv2-nano_shapes.py', None),
    'mask2former-semantic': ('configs/demo/mask2former_swinv2-nano_shapes-semantic.py', None),
}


@pytest.fixture(scope='module')
def scene(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('large') / 'scene.png'
    img, *_ = _image(np.random.default_rng(1), 224, 0, radius=(10, 24), grid=64)
    img.crop((0, 0, 224, 176)).save(path)
    return path


@pytest.mark.latest_only
@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_family_runs_whole_and_sliced(family, scene):
    config, has_masks = FAMILIES[family]
    # random weights: Cascade's last stage scores every box below its test threshold
    options = {'model.test_cfg.rcnn.score_thr': 0.0} if family == 'cascade' else None
    model, host, _classes = load_model(ROOT / config, None, cfg_options=options)
    assert host == ('mmseg' if has_masks is None else 'mmdet')
    for max_memory, mode, tiles in ((None, 'whole', 1), (0, 'sliced', 9)):
        infer = LargeImageInferencer(model, host, (96, 96), 0.25, max_memory, batch=4,
                                     score_thr=0.0)
        result = infer(scene)
        assert (result.mode, result.tiles, result.height, result.width) == (mode, tiles, 176,
                                                                            224)
        if host == 'mmseg':
            assert result.labels.shape == (176, 224)
            continue
        assert result.detections
        boxes = np.stack([d.box for d in result.detections])
        assert (boxes[:, :2] >= -1).all() and (boxes[:, 2] <= 225).all() and \
            (boxes[:, 3] <= 177).all()
        assert all((d.mask is not None) == has_masks for d in result.detections)


def _local_segmentor():
    """A real mmseg EncoderDecoder whose logits at a pixel depend on its 16x16 window alone
    (one unshifted SwinV2 block, a 1x1 FCN head): crops aligned to 16 px see what the whole
    image sees, but at their borders (the head's bilinear upsampling)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    import swinv2_backbone  # noqa: F401  (registers the backbone)
    init_default_scope('mmseg')
    return MODELS.build(dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.7, 116.3, 103.5],
                               std=[58.4, 57.1, 57.4], bgr_to_rgb=True),
        backbone=dict(type='SwinV2Backbone', arch=dict(embed_dim=32, depths=(1,),
                                                       num_heads=(2,)),
                      window_size=4, out_indices=(0,)),
        decode_head=dict(type='FCNHead', in_channels=32, channels=16, num_convs=1,
                         kernel_size=1, concat_input=False, num_classes=4,
                         loss_decode=dict(type='CrossEntropyLoss')),
        test_cfg=dict(mode='whole'))).eval()


@pytest.mark.latest_only
def test_sliced_segmentation_equals_whole_where_crops_cover_the_receptive_field(scene):
    from devkit.testing import randomize_
    model = randomize_(_local_segmentor())
    whole = LargeImageInferencer(model, 'mmseg', (64, 64), 0.25, None)(scene).labels
    sliced = LargeImageInferencer(model, 'mmseg', (64, 64), 0.25, 0)(scene)
    # stride 48 (3 windows of 16 px), the last crops flush at 112 and 160: whole windows all
    assert sliced.tiles == 20
    agree = (sliced.labels == whole).mean()
    assert agree >= 0.999, agree  # the few pixels apart lie on crop borders


@pytest.mark.latest_only
def test_tool_writes_results_and_explains_bad_input(tmp_path, scene):
    from swinv2_backbone.hosts.runner import build_model, load_config
    config = ROOT / FAMILIES['mask-rcnn'][0]
    model = build_model(load_config(config))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(
        classes=('circle', 'square', 'triangle')))), tmp_path / 'model.pth')
    tool = [sys.executable, str(ROOT / 'tools' / 'infer_large.py'), str(config),
            str(tmp_path / 'model.pth')]
    run = subprocess.run([*tool, str(scene), '--out', str(tmp_path / 'out'), '--tile', '96',
                          '96', '--max-memory', '0', '--batch', '2', '--score-thr', '0',
                          '--vis'], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert 'sliced (9 tiles)' in run.stdout and 'tiles 9/9' in run.stdout
    out = json.loads((tmp_path / 'out' / 'scene.json').read_text())
    assert (out['height'], out['width'], out['mode']) == (176, 224, 'sliced')
    assert out['classes'] == ['circle', 'square', 'triangle'] and out['detections']
    from pycocotools import mask as mask_utils
    rle = out['detections'][0]['segmentation']
    assert mask_utils.decode(dict(rle, counts=rle['counts'].encode())).shape == (176, 224)
    assert Image.open(tmp_path / 'out' / 'scene_vis.jpg').size == (224, 176)
    for args, message in (([str(tmp_path / 'missing.png')], 'no image matches'),
                          ([str(scene), '--overlap', '1.5'], 'overlap must be in [0, 1)')):
        bad = subprocess.run([*tool, *args, '--out', str(tmp_path / 'o2')], capture_output=True,
                             text=True)
        assert bad.returncode == 2 and message in bad.stderr and 'Traceback' not in bad.stderr
