#!/bin/bash
# v15y's one device call (run from the tree's root copy under /work/main/.devtree/i16y; the v14 tree beside it):
# GPU tests of the KV-outer kernel for the cooperative variants, the in-process bench (kv_coop_bench: 128K checks
# bit for bit vs variant 7, stage and whole-prefill rounds), tree_compare rounds vs the v14 tree with the faster
# cooperative variant as this tree's default; tables last. Results under $OUT.
export PYTHONUNBUFFERED=1
ME=$PWD
V14=$(cd ../v14 && pwd)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv | tee $OUT/card.txt
(export PYTHONPATH=$ME M3LAB_MSA_CUDA_CACHE=$ME/.msa_cache
 timeout 100 python -m pytest -q -m gpu tests/kernels/msa/test_cuda_kv_outer.py -k "13 or 14 or prefill or graph" \
   -p no:cacheprovider 2>&1 | tee $OUT/gpu_tests.log | tail -15
 timeout 170 python -m kernels.bench.kv_coop_bench --variants 7,13,14 --rounds 8 --chunk-rounds 4 \
   --out $OUT/kv_coop.jsonl 2>&1 | tee $OUT/bench.log | grep -v "^kind=time")
echo "## bench table"; grep -A40 "^## table" $OUT/bench.log
BEST=$(python - <<'PY'
import json, os, statistics
rows = [json.loads(l) for l in open(os.environ["OUT"] + "/kv_coop.jsonl")]
med = {v: statistics.median([r["ms"] for r in rows if r["kind"] == "time" and r["run"] == f"v{v}"
        and r["case"].endswith("K indexer sel, whole default prefill")] or [1e9]) for v in (13, 14)}
print(min(med, key=med.get))
PY
)
echo "tree_compare: this tree with variant $BEST as the default vs v14"
for r in 1 2; do
  (cd $V14 && PYTHONPATH=$V14 M3LAB_MSA_CUDA_CACHE=$V14/.msa_cache timeout 45 python -m kernels.bench.tree_compare \
     --tree v14 --kinds "indexer sel" --jsonl $OUT/trees.jsonl) | tail -3
  PYTHONPATH=$ME M3LAB_MSA_CUDA_CACHE=$ME/.msa_cache timeout 45 python -m kernels.bench.tree_compare \
     --tree v15y-v$BEST --kv-variant $BEST --kinds "indexer sel" --jsonl $OUT/trees.jsonl | tail -3
done
echo; echo "## bench table"; grep -A40 "^## table" $OUT/bench.log
echo; echo "## trees"; PYTHONPATH=$ME python -m kernels.bench.tree_compare --table $OUT/trees.jsonl | tee $OUT/trees.md
grep -E "passed|failed" $OUT/gpu_tests.log | tail -2
