"""Applications of a trained backbone: feature extraction (``extract``), ONNX export
(``export``), mmdeploy's whole-model deployment with its rewrites (``deploy``), and any mmdet or
mmseg model on large images (``large``)."""
