#!/usr/bin/env bash
# Issue 14 on a 2-GPU H200 machine, in one call of at most 600 s (device time is scarce). Order: the throughput
# rows on quiet GPUs first (cold vs warm on one GPU, then warm with 2 evaluations in flight on 1 and on 2 GPUs),
# then the scripted CUDA search through the real loop (warm references) with the warm tests beside it.
#   bash benchmarks/kernel_gpu_throughput.sh OUT_DIR      (repository root; OUT_DIR = the device tool's $OUT)
# Every result is written into OUT_DIR as it is produced (at most 8 files come back: 6 logs + 1 md + 1 json), so a
# call stopped at its limit still returns what finished. Python packages the machine lacks (langgraph...) are
# expected as wheels in .gpuwheels/ (see the device README).
set -u
OUT=${1:?results folder}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if ls .gpuwheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpuwheels/*.whl && export PYTHONPATH=$PWD:/tmp/site
fi
nvidia-smi -L
python3 -c "import torch, langgraph; print('torch', torch.__version__, 'gpus', torch.cuda.device_count())"
tp() {  # name, CUDA_VISIBLE_DEVICES, then kernel_harness_bench.py arguments
  local name=$1 gpus=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpus python3 benchmarks/kernel_harness_bench.py --device cuda --suite throughput "$@" \
    >> "$OUT/throughput.log" 2>&1
  echo "== $name done at $SECONDS s" >> "$OUT/throughput.log"
}
tp cold 0 --targets softmax --n "${N_COLD:-3}" --modes cold
tp warm 0 --targets softmax,layernorm --n "${N_WARM:-8}" --modes warm
tp one-gpu-2-in-flight 0 --targets softmax --n "${N_PAR:-12}" --modes warm --in-flight 2
tp two-gpus-2-in-flight 0,1 --targets softmax --n "${N_PAR:-12}" --modes warm --in-flight 2
python3 -m pytest -q -p no:cacheprovider tests/tasks/kernel/test_warm.py tests/tasks/kernel/test_options.py \
  > "$OUT/tests.log" 2>&1 &
SEARCH_S=$(( ${BUDGET_S:-570} - SECONDS ))
CUDA_VISIBLE_DEVICES=1 timeout "$SEARCH_S" python3 benchmarks/kernel_cuda_bench.py --phases search \
  --search-iterations 30 --search-deadline-s "$(( SEARCH_S - 15 ))" --out "$OUT" > "$OUT/search.log" 2>&1
wait
grep -E '^\||^==' "$OUT/throughput.log"; tail -n 15 "$OUT/search.log"; tail -n 5 "$OUT/tests.log"
