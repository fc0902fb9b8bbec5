#!/usr/bin/env bash
# The GPU measurements of docs/BENCHMARKS.md in one go (a machine with one CUDA GPU; OUT: where results go).
# Optional: wheels in .whl/ (transformers, peft, bitsandbytes) are installed into /tmp/site first, for machines
# whose image lacks them or carries other versions.
set -u
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)" 2>&1 | grep -v kernels
start=$(date +%s)
python3 scripts/bench/llava_recipe_gpu.py --train-batches 16,8,4 --qlora-batches 4,8,16 --skip speed --out "$OUT/llava7b_recipe.json" > "$OUT/llava7b_recipe.log" 2>&1
echo "recipe bench rc=$? in $(( $(date +%s) - start )) s"; tail -c 1500 "$OUT/llava7b_recipe.log"
start=$(date +%s)  # issue 32: checkpointing auto, FlashAttention-2, Liger side by side (own process: Liger patches stay)
python3 scripts/bench/llava_recipe_gpu.py --skip eval,bf16,qlora --speed-batch 16,8 --out "$OUT/llava7b_speed.json" > "$OUT/llava7b_speed.log" 2>&1
echo "speed bench rc=$? in $(( $(date +%s) - start )) s"; tail -c 1500 "$OUT/llava7b_speed.log"
start=$(date +%s)
PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}. timeout 200 python3 -m llava_cit.cli demo --method switchcit --method seq-lora --out /tmp/demo-gpu > "$OUT/demo_gpu.log" 2>&1
echo "tiny vision demo on the GPU rc=$? in $(( $(date +%s) - start )) s"; tail -n 25 "$OUT/demo_gpu.log"
