# The SwinV2 fine-tuning recipe (./swinv2_recipe.py) and the import of this package, used next
# to a host base config. A host base that sets custom_imports itself (mmseg's Mask2Former imports
# mmdet.models) takes ./swinv2_recipe.py instead and lists both imports.
_base_ = './swinv2_recipe.py'
custom_imports = dict(imports=['swinv2_backbone'], allow_failed_imports=False)
