#!/usr/bin/env bash
# Issue 14 part 6 on a GPU host, in ONE call: kernel evaluation throughput cold vs warm vs warm + pre-started
# candidate workers (softmax and layernorm on GPU 0), then 1 vs 2 GPUs (2 evaluations in flight, one warm evaluator
# per GPU). Each step has its own time limit; the markdown tables are printed last. Raw JSON and logs go to $OUT.
#   OUT=/tmp/out bash benchmarks/kernel_throughput_gpu.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/kernel-throughput}
mkdir -p "$OUT"
ITERS=${ITERS:-20}
bench() {  # name, time limit, then the bench's arguments
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" python3 benchmarks/kernel_harness_bench.py --device cuda --suite throughput --iters "$ITERS" \
        --json "$OUT/$name.json" --md "$OUT/tables.md" "$@" >"$OUT/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - t0)) s"
}
nvidia-smi --query-gpu=index,name,clocks.sm,clocks.max.sm,power.draw,utilization.gpu,memory.used --format=csv
python3 - <<'PY'
import time
t = time.time()
import torch
a = time.time()
torch.zeros(1, device="cuda")
torch.cuda.synchronize()
print(f"one process: python + import torch {a - t:.2f} s, CUDA init {time.time() - a:.2f} s, {torch.__version__}, "
      f"{torch.cuda.device_count()} GPU(s)")
PY
echo "## one GPU (GPU 0), the three modes one after another" >>"$OUT/tables.md"
CUDA_VISIBLE_DEVICES=0 bench cold 130 --targets softmax,layernorm --modes cold --n "${N_COLD:-2}"
CUDA_VISIBLE_DEVICES=0 bench warm 130 --targets softmax,layernorm --modes warm --n "${N_WARM:-3}"
CUDA_VISIBLE_DEVICES=0 bench prestart 130 --targets softmax,layernorm --modes prestart --n "${N_PRE:-5}"
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then  # the 1-GPU row to compare with: prestart above (1 in flight)
    echo "## softmax, warm + pre-started workers on 2 GPUs, 2 evaluations in flight" >>"$OUT/tables.md"
    CUDA_VISIBLE_DEVICES=0,1 bench two_gpus 120 --targets softmax --modes prestart --n "${N_TWO:-12}" --in-flight 2
fi
nvidia-smi --query-gpu=index,clocks.sm,power.draw,utilization.gpu --format=csv
grep -h '"errors": \["' "$OUT"/*.log | head -5
cat "$OUT/tables.md"
