# Fully sharded data parallel (FSDP) training through mmengine's FlexibleRunner: the backbone
# and each of its SwinV2 blocks are FSDP units (swinv2_wrap_policy, registered by this
# package), parameters, gradients and optimizer state are sharded over the processes
# (FULL_SHARD). The backbone runs in bf16 (its units' mixed precision), with float32 gradients
# reduced and float32 master weights; the neck and heads (the root unit) stay float32, which
# mmcv's NMS and RoIAlign and the losses need: the backbone's outputs are cast back to float32.
# use_orig_params=True keeps the SwinV2 recipe's paramwise rules (no decay on CPB MLPs,
# temperatures, q/v biases; layer decay). Activation checkpointing: the backbone's with_cp.
# Checkpoints are saved whole by rank 0 ('full'), so tools/test.py, export and conversion load
# them in one process; state_dict_cfg='local' saves one shard per rank instead (a folder).
# Start with tools/dist_train.sh CONFIG NPROC.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='SwinV2FSDPStrategy',  # mmengine's FSDPStrategy; mixed precision for the backbone
    model_wrapper=dict(
        auto_wrap_policy=dict(
            type='swinv2_wrap_policy',
            mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32',
                                 buffer_dtype='float32')),
        use_orig_params=True,
        sharding_strategy='FULL_SHARD'),
    state_dict_cfg='full')
