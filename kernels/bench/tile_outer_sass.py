"""Registers, spills and local-memory instructions of the tile-outer prefill kernel, compiled for sm_90 with no GPU.

Triton compiles ahead of time for a named target with its bundled ptxas, so the register cost of a kernel change
can be read on a CPU-only machine before spending device time (NOTES.md v9: the fused merge's slowdown). Run:
    python -m kernels.bench.tile_outer_sass --fuse-merge 0 1
Prints one line per configuration: registers per thread, stack (spill) bytes, LDL / STL count, HGMMA count.
The local Triton may differ from the GPU machine's, so compare configurations, not absolute numbers.
v12m: ``--partials bf16 int8 int8-side`` (KV-outer partials in bf16, int8 with the carrier part stored in place,
int8 with the bf16 carrier side buffer); ``--kv-outer``: the KV-outer kernel with bf16 and int8 partials instead,
with instruction counts (the int8 epilogue's absmax, rounding add and byte packing).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget

from kernels.msa.prefill import _kv_outer_kernel
from kernels.msa.tile_outer import _tile_outer_kernel

POINTERS = {"tokmask_ptr": "*i64", "req_ptr": "*i64", "direct_ptr": "*i8", "plse_ptr": "*fp32", "ps_ptr": "*fp32",
            "q_ptr": "*bf16", "kv_ptr": "*bf16", "out_ptr": "*bf16", "po_ptr": "*bf16", "clse_ptr": "*fp32"}
FLOATS = ("sm_scale_log2", "v_scale")
PARTIALS = {"bf16": ("*bf16", False), "int8": ("*i8", False), "int8-side": ("*i8", True)}
"""--partials: (KV-outer partials' pointer type, carrier parts in the bf16 side buffer)"""


def compile_kernel(fn, constexprs: dict, pointers: dict[str, str], warps: int, stages: int) -> bytes:
    """cubin of a Triton kernel for sm_90, pointers typed by ``pointers`` (others *i32), as the JIT specialises."""
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = pointers.get(name, "*i32")
        else:
            signature[name] = "fp32" if name in FLOATS else "i32"
    # The JIT specialises pointers (16-byte aligned) and integers divisible by 16 as such; without these hints the
    # compile uses 2-byte loads and spills twice as much as the kernel that runs (v10t: 760 vs 352 B of stack).
    aligned = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names)
               if signature[name] != "constexpr" and (name.endswith("_ptr") or name.startswith("stride")
                                                      or name == "num_tokens")}
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=aligned)
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
    return kernel.asm["cubin"]


def compile_sm90(fuse_merge: bool, warps: int, keys: int, stages: int, partials: str = "bf16") -> bytes:
    """cubin of the kernel at M3 shapes (16 heads per KV head, d = 128, 8-token tiles, bf16)."""
    po, side = PARTIALS[partials]
    constexprs = dict(GROUP=16, GROUP_PAD=16, HEAD_DIM=128, TILE_T=8, TOPK=16, MAX_UNION=32, KEYS=keys, BLOCK=128,
                      USE_CLEAN=True, WARP_SPEC=False, SCALE_V=False, FUSE_MERGE=fuse_merge, SIDE=side)
    pointers = {**POINTERS, "po_ptr": po, "co_ptr": "*bf16" if side else po}
    return compile_kernel(_tile_outer_kernel, constexprs, pointers, warps, stages)


def compile_kv_outer_sm90(partials: str) -> bytes:
    """cubin of the KV-outer kernel at M3 shapes with its defaults (64 rows x 4 warps, 2 stages, prefetch)."""
    constexprs = dict(GROUP=16, GROUP_PAD=16, HEAD_DIM=128, TOPK=16, TILE_T=4, CHUNK=128, PREFETCH=True,
                      RELOAD_KV=False, BLOCK=128, SCALE_V=False)
    return compile_kernel(_kv_outer_kernel, constexprs, {**POINTERS, "po_ptr": PARTIALS[partials][0]}, 4, 2)


INSTRUCTIONS = ("FMNMX", "FFMA", "PRMT", "F2FP", "STG")
"""Opcodes --kv-outer also counts (the int8 epilogue: absmax, rounding add, byte packing; bf16: its packing)."""


def report(cubin: bytes, extra: tuple[str, ...] = ()) -> str:
    """'REG:n STACK:b' from cuobjdump, and the LDL / STL / HGMMA (and ``extra``) counts of the SASS."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([tool, "--dump-sass", f.name], capture_output=True, text=True).stdout
    regs = " ".join(re.findall(r"(?:REG|STACK):\d+", usage))
    counts = {op: len(re.findall(rf"\b{op}\b", sass)) for op in ("LDL", "STL", "HGMMA", *extra)}
    if extra:
        counts["instructions"] = len(re.findall(r"^\s+/\*[0-9a-f]{4}\*/", sass, re.MULTILINE))
    return f"{regs} " + " ".join(f"{k}:{v}" for k, v in counts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuse-merge", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--warps", type=int, default=4)
    parser.add_argument("--keys", type=int, default=64)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--partials", nargs="+", choices=sorted(PARTIALS), default=["bf16"])
    parser.add_argument("--kv-outer", action="store_true", help="the KV-outer kernel (per --partials) instead")
    args = parser.parse_args()
    if args.kv_outer:
        print(f"triton {triton.__version__}, target sm_90, KV-outer kernel (its defaults)")
        for partials in args.partials:
            print(f"kv_outer partials={partials}: {report(compile_kv_outer_sm90(partials), INSTRUCTIONS)}")
        return
    print(f"triton {triton.__version__}, target sm_90, {args.warps} warps, {args.keys}-key pieces, {args.stages} stages")
    for partials in args.partials:
        tag = "" if partials == "bf16" else f" partials={partials}"
        for fuse in args.fuse_merge:
            cubin = compile_sm90(bool(fuse), args.warps, args.keys, args.stages, partials)
            print(f"fuse_merge={bool(fuse)}{tag}: {report(cubin)}")


if __name__ == "__main__":
    main()
