"""The MSA indexer compiled for sm_90 with no GPU: which wgmma it issues, registers, spills, per tile shape.

v13r: the fp8 index path (index_q and the index-key cache both float8_e4m3fn) must run a native FP8 wgmma
(`wgmma.mma_async ... .e4m3.e4m3`, SASS `QGMMA`), not widen to bf16 (`HGMMA`). This reads the PTX and the SASS of
each configuration before any device time is spent (Triton's bundled ptxas; the local Triton may differ from the GPU
machine's, so compare configurations, not absolute numbers). Run:
    python -m kernels.bench.indexer_sass [--configs 128x3x8,256x2x8]
Prints one line per (dtypes, rows x stages x warps): the PTX wgmma shapes, REG / STACK, LDL / STL, HGMMA / QGMMA.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter

import triton
from triton.backends.compiler import GPUTarget

from kernels.bench.tile_outer_sass import report
from kernels.msa.indexer import FP8_CONFIG, _index_topk_kernel

DTYPES = {"fp8": "*fp8e4nv", "bf16": "*bf16"}
"""Pointer types of index_q / the index-key cache per name (float8_e4m3fn is Triton's fp8e4nv)."""


def compile_indexer(q: str, k: str, rows: int, stages: int, warps: int, heads: int = 4):
    """The compiled kernel at M3 shapes (4 index heads, d = 128, top-16), typed as the JIT specialises it."""
    constexprs = dict(NUM_HEADS=heads, HEAD_DIM=128, BLOCK_T=rows // heads, TOPK=16, INIT_BLOCKS=0, LOCAL_BLOCKS=1,
                      NUM_STAGES=stages)
    pointers = {"iq_ptr": DTYPES[q], "ik_ptr": DTYPES[k], "sel_ptr": "*i32"}
    fn = _index_topk_kernel
    signature = {name: "constexpr" if name in constexprs else pointers.get(name, "*i32") if name.endswith("_ptr")
                 else "i32" for name in fn.arg_names}
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names)
               if signature[name] != "constexpr" and (name.endswith("_ptr") or name.startswith("stride"))}
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=aligned)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})


def wgmma_shapes(ptx: str) -> str:
    """'wgmma.mma_async...m64n128k32.f32.e4m3.e4m3 x4' style summary of the PTX's MMA instructions."""
    found = Counter(re.findall(r"wgmma\.mma_async\.sync\.aligned\.(\S+?)\s", ptx))
    return ", ".join(f"{shape} x{n}" for shape, n in sorted(found.items())) or "no wgmma"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="128x3x8,128x4x8,128x2x4,256x2x8",
                        help="rows x stages x warps, comma-separated (fp8 pairs only; bf16 and mixed use the first)")
    args = parser.parse_args()
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",") if c]
    print(f"triton {triton.__version__}, target sm_90, default fp8 config {FP8_CONFIG}")
    cases = [("fp8", "fp8", c) for c in configs] + [("bf16", "bf16", configs[0]), ("fp8", "bf16", configs[0]),
                                                     ("bf16", "fp8", configs[0])]
    for q, k, (rows, stages, warps) in cases:
        kernel = compile_indexer(q, k, rows, stages, warps)
        print(f"q={q} k={k} {rows}x{stages}x{warps}: {wgmma_shapes(kernel.asm['ptx'])}; "
              f"{report(kernel.asm['cubin'], ('QGMMA',))} smem {kernel.metadata.shared}")


if __name__ == "__main__":
    main()
