#!/usr/bin/env bash
# v15z (i16z): one device call = GPU tests of the new tile-outer variants, then the interleaved A/B of the step and
# the default prefill (variants in $VARIANTS, the first = baseline) at 128K f = 1 / 0.9 / the indexer's selections,
# then (if $TREES is set) tree_compare rounds of this tree with $TREE_DEFAULT as the default vs ../v14.
# Run from .devtree/<name> with PYTHONPATH / M3LAB_MSA_CUDA_CACHE pointing here.
set -o pipefail
VARIANTS=${VARIANTS:-5,9,10,11}
REPEAT=${REPEAT:-3}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv | tee "$OUT/smi.txt"
date -u
# a hang in a new barrier scheme must not eat the budget: one small launch of each new variant first
timeout 90 python - <<'PY' 2>&1 | tee "$OUT/smoke.log" || { echo "SMOKE FAILED"; exit 1; }
import os, torch
from kernels.bench.tile_outer_cuda_bench import step_args
from kernels.msa.cuda import tile_outer_attention_cuda
from kernels.msa.inputs import local_selection, make_case
case = make_case([2048], [2048], 64, 4, 128, torch.bfloat16, "cuda", seed=1)
sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=2)
base = None
for v in [int(x) for x in os.environ.get("VARIANTS", "5,9,10,11").split(",")]:
    args = step_args(case, sel)
    tile_outer_attention_cuda(*args, variant=v, per_sm=1)
    torch.cuda.synchronize()
    o, po = args[7], args[8]
    rows = ~torch.isnan(o)
    base = base or (o, rows)
    err = float((o[base[1]].float() - base[0][base[1]].float()).norm() / base[0][base[1]].float().norm())
    print(f"smoke v{v}: ok, rows {int(rows.sum())}, vs first {err:.2e}", flush=True)
PY
date -u

timeout ${TEST_TIMEOUT:-200} python -m pytest -q -m gpu $(cat "${TEST_IDS:-kernels/bench/v15z_ids.txt}") 2>&1 | tee "$OUT/gpu_tests.log" | tail -25
date -u
timeout ${AB_TIMEOUT:-200} python -m kernels.bench.tile_outer_cuda_bench --compare "$VARIANTS" --sizes 131072 \
    --fractions 1.0,0.9,indexer --repeat "$REPEAT" --out "$OUT/ab.jsonl" 2>&1 | tee "$OUT/ab.log" | grep -v "^kind=A/B"
date -u
if [ "$TREE_DEFAULT" = auto ]; then  # the variant (not the first) with the best product of whole-prefill medians
  TREE_DEFAULT=$(python - <<'PY'
import json, statistics, os
rows = [json.loads(l) for l in open(os.environ["OUT"] + "/ab.jsonl") if '"A/B whole prefill"' in l]
vs = [int(v) for v in os.environ["VARIANTS"].split(",")][1:]
def score(v):
    p = 1.0
    for case in sorted({r["case"] for r in rows}):
        p *= statistics.median(r["ms"] for r in rows if r["variant"] == v and r["case"] == case)
    return p
print(min(vs, key=score))
PY
)
  echo "tree_compare candidate default: $TREE_DEFAULT"
fi
if [ -n "$TREES" ]; then
  rm -rf /tmp/cand && cp -r . /tmp/cand && sed -i "s/^DEFAULT_VARIANT = .*/DEFAULT_VARIANT = ${TREE_DEFAULT}/" \
      /tmp/cand/kernels/msa/cuda/__init__.py
  for r in $(seq 1 "$TREES"); do
    for t in v14 cand; do
      d=$([ $t = v14 ] && echo ../v14 || echo /tmp/cand)
      (cd "$d" && PYTHONPATH=$PWD M3LAB_MSA_CUDA_CACHE=$PWD/.msa_cache timeout 120 python -m kernels.bench.tree_compare \
          --tree $t --jsonl "$OUT/trees.jsonl" --kinds "indexer sel,f=0.9,f=1.0" 2>&1 | tail -8)
    done
  done
  python -m kernels.bench.tree_compare --table "$OUT/trees.jsonl" | tee "$OUT/trees_table.md"
fi
date -u
grep "^A/B\|^## A/B" "$OUT/ab.log"
