"""Applications of a trained backbone: feature extraction (``extract``), ONNX export
(``export``) and mmdeploy's whole-model deployment with its rewrites (``deploy``)."""
