"""The development kit, beside the package in a checkout (not installed with it): what the tools,
the tests and the demo configs share. Random and trained-like weights and error measures
(``testing``), the synthetic shapes dataset (``synthetic``, ``panoptic``), the side-by-side
benchmark (``benchmark``), FLOP analysis, op counts, memory and traffic estimates, profilers,
the allocator setting for many CPU forwards (``allocator``), the demos' training and pictures
(``demo``). The scripts among them run from the checkout's root with
``python -m devkit.<name>``. The benchmarks import timm, HF transformers and mmpretrain when
asked for them.
"""
