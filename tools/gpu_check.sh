#!/usr/bin/env bash
# Every GPU check and benchmark, in one run on a GPU machine: tests/test_gpu.py with the Triton
# kernels compiled; an eager bf16-AMP training step at 1024x1024 and at mmdet's varying shapes (1333x800 keep-ratio resize, batch 2) against
# timm and HF; bf16 inference at 800x1344; the CUDA kernels a training step spends its time in.
#
#   here, once:        make gpu-wheels    (mmengine and its pure-Python needs, into .whl/: the
#                                          GPU image has PyTorch, Triton, timm and HF, not these)
#   on the GPU:        the device tool's run with command 'bash tools/gpu_check.sh',
#                      carry ['.whl'], timeout_s 590 (the steps' limits add up to 540 s)
#   a rehearsal here:  GPU_CHECK_DEVICE=cpu bash tools/gpu_check.sh    (tiny sizes, one round)
#
# On the GPU each step runs under a time limit of its own (the rehearsal applies none: a CPU's
# speed is no test), and a step that fails does not stop the next.
# The most wanted results come first. Logs and JSON go to $OUT (default: gpu_check/); each
# step's exit status and seconds to $OUT/summary.txt; the result tables are printed at the end.
set -u
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
PY=${PYTHON:-python3}
if ! $PY -c 'import mmengine' 2>/dev/null; then
    [ -d .whl ] || { echo 'no mmengine and no .whl/: run `make gpu-wheels` first'; exit 2; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

device=${GPU_CHECK_DEVICE:-cuda}
if [ "$device" = cuda ]; then
    train='--size 1024 1024' resize='--resize 1333 800' infer='--size 800 1344'
    rounds='--rounds 20 --warmup 5' varying='--rounds 40 --warmup 5'
    graphed=('swinv2_backbone (cuda_graph)' 'swinv2_backbone (cuda_graph, unfused)'
             'timm (cuda_graph)')
    memory=''
else  # the rehearsal: every command at a size a CPU runs in seconds (the tests skip)
    train='--size 64 96' resize='--resize 200 120' infer='--size 64 96'
    rounds='--rounds 1 --warmup 1' varying='--rounds 2 --warmup 1'
    graphed=()  # timm's graphs are captured on CUDA only
    memory='--no-memory'  # a process per row on a CPU
fi
ours=(swinv2_backbone 'swinv2_backbone (unfused)')
bench=($PY tools/benchmark.py --device "$device" --amp bf16 --batch 2 $memory)

step() {  # step NAME SECONDS COMMAND...: run COMMAND into $OUT/NAME.log, on a GPU at most SECONDS
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    [ "$device" = cuda ] || limit=0  # timeout 0: no limit
    echo "== $name (time limit: $limit s)"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
}

step environment 30 sh -c "nvidia-smi; lscpu | grep 'Model name'; $PY -c \"
import torch, triton, timm, transformers, mmengine
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__,
      'timm', timm.__version__, 'transformers', transformers.__version__,
      'mmengine', mmengine.__version__)
print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')\""
# target: an eager training step >= 1.4x timm's at 1024x1024, bf16 AMP, batch 2
step train_1024 100 "${bench[@]}" --mode training $train $rounds \
    --impls "${ours[@]}" 'swinv2_backbone (cuda_graph)' timm hf --json "$OUT/train_1024.json"
# target: >= 1.3x timm's when the shape changes every step (mmdet's detection recipes)
step train_varying 120 "${bench[@]}" --mode training $resize $varying \
    --impls "${ours[@]}" timm hf --json "$OUT/train_varying.json"
step test_gpu 200 $PY -m pytest -m cuda tests/test_gpu.py -rA -v -p no:cacheprovider  # -v: each result as it comes
step inference_800x1344 60 "${bench[@]}" --mode inference $infer $rounds \
    --impls "${ours[@]}" "${graphed[@]}" timm hf --json "$OUT/inference_800x1344.json"
step profile_training 30 $PY -m devkit.profile_step --mode training --amp bf16 \
    $train --batch 2 --device "$device"

echo; cat "$OUT/summary.txt"
for name in train_1024 train_varying inference_800x1344; do  # the result tables
    echo "== $name"
    sed -n '/^SwinV2-T/p;/^implementation/,$p' "$OUT/$name.log"
done
echo "== test_gpu"
tail -n 25 "$OUT/test_gpu.log"
