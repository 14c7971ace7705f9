#!/usr/bin/env bash
# Issue 14 on one H200: the scripted CUDA C++ search through the real loop (benchmarks/kernel_search_soak.py, CUDA
# pool, warm references, sanitizer on each new best), stopped by `m3lab runs stop` and resumed in a fresh process.
#   bash benchmarks/kernel_cuda_search.sh smoke OUT_DIR [WHEELS_DIR]
#       a 2-iteration search (its prebuild builds the pool's sources once); the compile cache -> OUT_DIR/ext-cache.tgz
#   bash benchmarks/kernel_cuda_search.sh search OUT_DIR [WHEELS_DIR] [SEED]
#       the GPU-marked kernel tests beside the >= 30-iteration search; SEED (a smoke's ext-cache.tgz, or the folder
#       a smoke left on this machine) seeds the run's compile cache
# Run from the repository root; OUT_DIR is the device tool's $OUT (at most 8 files come back). Python packages the
# machine lacks (langgraph...) come as wheels in WHEELS_DIR (see the device README).
set -u
MODE=${1:?smoke or search}; OUT=${2:?results folder}; WHEELS=${3:-}; SEED=${4:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=$PWD
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.used,utilization.gpu --format=csv,noheader
python3 -c "import torch, langgraph, langchain_core, typer; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpus', torch.cuda.device_count())" || exit 1
WORK=/tmp/m3lab-$MODE
SOAK=(python3 benchmarks/kernel_search_soak.py --device cuda --pool cuda --iters 5 --warm --prebuild --work "$WORK")
show() { grep -E "^prebuild|stop requested|phase:|FAILED|Error" "$1"; }
if [ "$MODE" = smoke ]; then
  "${SOAK[@]}" --iterations 2 --stop-at 1 --out "$OUT/smoke.md" > "$OUT/smoke.log" 2>&1
  echo "smoke exit $? at $SECONDS s"
  CACHE="$WORK/runs/$(cat $WORK/run_id)/logs/kernel"
  tar czf "$OUT/ext-cache.tgz" -C "$CACHE" ext-cache && cp -a "$CACHE/ext-cache" /tmp/m3lab-smoke-cache
  show "$OUT/smoke.log"; sed -n '/^| metric/,$p' "$OUT/smoke.md"
else
  python3 -m pytest -v -p no:cacheprovider -m gpu tests/tasks/kernel -n 8 --timeout 400 \
    > "$OUT/gpu_tests.log" 2>&1 &
  TESTS=$!
  SEEDED=()
  if [ -d "$SEED" ]; then
    SEEDED=(--seed-cache "$SEED")
  elif [ -f "$SEED" ]; then
    mkdir -p /tmp/m3lab-seed && tar xzf "$SEED" -C /tmp/m3lab-seed && SEEDED=(--seed-cache /tmp/m3lab-seed/ext-cache)
  fi
  "${SOAK[@]}" --iterations "${ITERATIONS:-30}" --stop-at "${STOP_AT:-15}" "${SEEDED[@]}" \
    --out "$OUT/kernel_cuda_search.md" > "$OUT/search.log" 2>&1
  echo "search exit $? at $SECONDS s"
  tar czf "$OUT/run.tgz" -C "$WORK/runs" --exclude ext-cache --exclude 'eval-*' "$(cat $WORK/run_id)"
  wait $TESTS
  echo "gpu tests exit $? at $SECONDS s"
  show "$OUT/search.log"; sed -n '/^| metric/,/^$/p' "$OUT/kernel_cuda_search.md"
  grep -E "passed|failed|FAILED|ERROR" "$OUT/gpu_tests.log" | tail -n 25
fi
