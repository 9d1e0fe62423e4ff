"""What the tools, the tests and the demo configs share, apart from the library itself (nothing in
the rest of the package imports it): random and trained-like weights and error measures
(``testing``), the synthetic shapes dataset (``synthetic``, ``panoptic``), the side-by-side
benchmark (``benchmark``), FLOP analysis, op counts, memory and traffic estimates, the demos'
training and pictures (``demo``). Imported as ``swinv2_backbone.devkit``; the scripts among them
run with ``python -m swinv2_backbone.devkit.<name>``. The benchmarks import timm, HF
transformers and mmpretrain when asked for them.
"""
