"""Integration with the OpenMMLab hosts: the registries (``registry``), building and running
configs (``runner``, behind tools/train.py and tools/test.py), the layer-decay optimizer
constructor (``optim``) and FSDP (``distributed``)."""
