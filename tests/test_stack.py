"""The OpenMMLab stack itself works on this machine: compiled ops, host configs, save and resume."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import BaseDataset
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn


def test_mmcv_compiled_nms_suppresses_overlapping_box():
    from mmcv.ops import nms
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))


def test_mask_rcnn_from_mmdet_coco_config_predicts_on_cpu(tmp_path):
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmdet.registry import MODELS
    register_all_modules()
    cfg_file = tmp_path / 'mask_rcnn.py'
    cfg_file.write_text("_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'\n"
                        "model = dict(backbone=dict(init_cfg=None))\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.type == 'MaskRCNN'
    model = MODELS.build(cfg.model).eval()
    img = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128),
                                         scale_factor=(1.0, 1.0)))
    with torch.no_grad():
        (result,) = model.test_step(dict(inputs=[img], data_samples=[sample]))
    pred = result.pred_instances
    assert pred.bboxes.shape[1] == 4 and pred.masks.shape[1:] == (96, 128)
    assert len(pred.bboxes) == len(pred.scores) == len(pred.labels)


def test_upernet_from_mmseg_ade20k_config_predicts_on_cpu(tmp_path):
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg_file = tmp_path / 'upernet.py'
    cfg_file.write_text("_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'\n"
                        "model = dict(pretrained=None)\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.model.decode_head.num_classes == 150
    model = MODELS.build(cfg.model).eval()
    img = torch.randint(0, 255, (3, 64, 96), dtype=torch.uint8)
    sample = SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96)))
    with torch.no_grad():
        (result,) = model.test_step(dict(inputs=[img], data_samples=[sample]))
    seg = result.pred_sem_seg.data
    assert seg.shape == (1, 64, 96)
    assert int(seg.min()) >= 0 and int(seg.max()) < 150


class _PointsDataset(BaseDataset):
    """y = 2x - 1 with noise, generated in memory."""

    def __init__(self, n: int = 16):
        self.n = n
        super().__init__(lazy_init=True, serialize_data=False)
        self._fully_initialized = True
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, generator=g)
        self.y = 2 * self.x - 1

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=self.x[i], target=self.y[i])


class _Regressor(BaseModel):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, inputs, target=None, mode='tensor'):
        out = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=((out - target) ** 2).mean())
        return out


def _runner(work_dir, max_iters, resume=False):
    return Runner(
        model=_Regressor(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=_PointsDataset(), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        resume=resume, randomness=dict(seed=0))


def test_runner_trains_saves_and_resumes_under_weights_only_torch_load(tmp_path):
    import swinv2_backbone  # noqa: F401  (configs import it; it allow-lists mmengine's globals)
    first = _runner(tmp_path, max_iters=1)
    first.train()
    ckpt = tmp_path / 'iter_1.pth'
    assert ckpt.exists()
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('iter_1.pth')
    saved = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert saved['meta']['iter'] == 1 and 'optimizer' in saved

    second = _runner(tmp_path, max_iters=2, resume=True)
    seen = {}
    orig = second.load_or_resume

    def record():
        orig()
        seen['iter'] = second.iter
        seen['weight'] = second.model.fc.weight.detach().clone()
    second.load_or_resume = record
    second.train()
    assert seen['iter'] == 1, 'resume did not continue from the saved iteration'
    assert torch.equal(seen['weight'], saved['state_dict']['fc.weight'])
    assert second.iter == 2 and (tmp_path / 'iter_2.pth').exists()


class _GetattrPayload:
    """Pickles as getattr(HistoryBuffer, '__init__'): a getattr the allow-list must refuse."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return getattr, (HistoryBuffer, '__init__')


def test_weights_only_load_still_refuses_arbitrary_getattr(tmp_path):
    import pickle

    import swinv2_backbone  # noqa: F401
    path = tmp_path / 'evil.pth'
    torch.save({'x': _GetattrPayload()}, path)
    # torch >= 2.6: our stand-in refuses the name; before, torch's loader refuses getattr itself
    # ("Unsupported class" in 2.1, "Unsupported global" in 2.5)
    with pytest.raises(pickle.UnpicklingError,
                       match='__init__|Unsupported (class|global).*getattr'):
        torch.load(path, weights_only=True)
