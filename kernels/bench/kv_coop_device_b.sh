#!/bin/bash
# v15y's second device call: why the cooperative variants are not faster. ncu (SpeedOfLight, ComputeWorkloadAnalysis,
# WarpStateStats, SchedulerStats; --clock-control none) of variants 7, 14 and 13 on every entry of the 32K indexer
# selections (one launch each, as v14v), then the stage alone with 6 / 13 / 7 / 14 interleaved at 128K (v13 vs v6 and
# v14 vs v7: the same rings, cooperative or alternating). Results under $OUT.
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD M3LAB_MSA_CUDA_CACHE=$PWD/.msa_cache
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
echo "ncu: $NCU"
for v in 7 14 13; do
  timeout 60 $NCU --clock-control none --kernel-name regex:kv_outer --launch-skip 3 --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    python -m kernels.bench.kv_outer_cuda_bench --once 32768 --variant $v > $OUT/ncu_v${v}_32k.txt 2>&1
  echo "== v$v"; grep -E "kv_outer_kernel<|Duration|DRAM Throughput|Issued Warp|Eligible Warps|Active Warps Per|No Eligible|Warp Cycles Per Issued|Executed Ipc A|Issue Slots Busy|SM Busy|Stall" $OUT/ncu_v${v}_32k.txt | cut -c1-140
done
timeout 120 python -m kernels.bench.kv_outer_cuda_bench --diag 131072 --stage-variants 6,13,7,14 --repeat 4 \
  --out $OUT/stage_b.jsonl > $OUT/stage_b.log 2>&1
python - <<'PY'
import json, os, statistics
from collections import defaultdict
s = defaultdict(list)
for l in open(os.environ["OUT"] + "/stage_b.jsonl"):
    r = json.loads(l); s[(r["csr"], r["variant"])].append(r["ms"])
print("| csr | variant | median ms | all samples |")
for (c, v), xs in s.items():
    print(f"| {c} | {v} | {statistics.median(xs):.2f} | {' / '.join(f'{x:.2f}' for x in xs)} |")
PY
