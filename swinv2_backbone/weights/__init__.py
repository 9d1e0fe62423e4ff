"""Weights: the checkpoint layouts of the official release, HF transformers, timm and
mmpretrain and their conversion (``checkpoints``); reading, loading and saving them
(``loading``); fetching URLs and HF hub ids (``download``)."""
