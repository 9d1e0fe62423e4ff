# mmdet detectors (RetinaNet, Faster R-CNN, ...) with a SwinV2 backbone: boxes with scores
# (dets, N x 5) and labels for any batch and image size, NMS in the graph, on ONNX Runtime.
# The model config's test_cfg (score_thr, nms_pre, max_per_img) takes precedence over the
# post-processing defaults below.
#   python tools/deploy.py configs/deploy/detection_onnxruntime_dynamic.py MODEL_CFG CKPT IMG
_base_ = ['./_base_/onnxruntime_dynamic.py']
onnx_config = dict(output_names=['dets', 'labels'],
                   dynamic_axes=dict(dets={0: 'batch', 1: 'num_dets'},
                                     labels={0: 'batch', 1: 'num_dets'}))
codebase_config = dict(
    type='mmdet', task='ObjectDetection', model_type='end2end',
    post_processing=dict(score_threshold=0.05, confidence_threshold=0.005, iou_threshold=0.5,
                         max_output_boxes_per_class=200, pre_top_k=5000, keep_top_k=100,
                         background_label_id=-1))
