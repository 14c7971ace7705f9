"""The tile-outer step of MSA prefill as an FA3-style CUDA C++ kernel for Hopper (sm_90a, CUTLASS/CuTe headers), and
(v12k) its KV-outer stage as a warp-specialised kernel in the same library (``kv_outer_partials_cuda``).

Drop-in for ``kernels.msa.tile_outer.tile_outer_attention`` (the v8 contract, bf16, M3's 16 query heads per KV head in
8-token tiles or, v18r, 8 per KV head (TP 8) in 16-token tiles, head_dim 128): same inputs (q, the vLLM-layout KV
cache, the ``TileSplit`` of ``tile_unions``) and outputs (direct rows into ``out``, the other rows into their carrier slot of the partials + log2-sum-exp).

Built with nvcc into a plain shared library (no torch headers: the two sources compile in parallel, ~90 s on 2 cores,
and the library works with any torch version) and called through ctypes; the build is cached by a hash of the sources
and flags.
CUTLASS's headers come from the ``nvidia-cutlass`` wheel (``pip install nvidia-cutlass``, the ``gpu-kernels`` extra).

Policy (v11): ``sparse_attention_triton(tile_impl="auto")``, the default, runs this kernel when ``choose()`` says so:
an sm_90 device, inputs it takes, and a library already built (never built inside a call: a request must not stall
~90 s on nvcc). It is built ahead by ``prepare()`` (the vLLM plugin calls it when the sparse layer is made) or by
``python -m kernels.msa.cuda build``; anything else falls back to the Triton kernel with one logged line saying why.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from kernels.msa.workspace import PartialBuffers, partial_buffers

if TYPE_CHECKING:
    from kernels.msa.merge import CarrierParts

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "tile_outer_sm90.cu"
SOURCES = (SOURCE, HERE / "kv_outer_sm90.cu")
"""Compiled in parallel and linked into one library (one hash, one build)."""
HEADERS = (HERE / "tile_outer_sm90.h", HERE / "kv_outer_sm90.h", HERE / "msa_sm90_common.cuh")
GROUP = 16
"""Query heads per KV head of M3 on a rank at tensor parallel <= 4 (the kernels' first and fully built group)."""
GROUPS = (16, 8)
"""Query heads per KV head both kernels take (v18r: 8 is M3 at tensor parallel 8, with fewer variants built)."""
HEAD_DIM = 128
TILE_ROWS = 128
"""MMA rows of a tile-outer item: tokens x query heads (2 consumer warpgroups of 64)."""
TILE_T = TILE_ROWS // GROUP
VARIANTS = {
    0: "2 stages, in sequence", 1: "2 stages, intra-warpgroup overlap", 2: "3 stages, intra-warpgroup overlap",
    3: "v2 + FFMA/ex2.approx softmax", 4: "v3 + ping-pong of the 2 consumers",
    5: "v3 + next tile's Q by cp.async (persistent grid)",
    6: "FP8 wgmma on widen.py's transposed e4m3 pages, Q quantised per row on chip, 4 stages, overlap",
    8: "v6 + next tile's bf16 Q staged by cp.async (persistent grid)",
    10: "v8 + the fused merge's first part loaded during the item's last block",
    12: "v10, the next tile's Q staged two threads per row (one shuffle for a row's amax instead of four)",
    16: "v12 without v10's first-part load (GROUP 8 only: its registers spill there)",
    19: "v12 with the fused merge's first two parts staged in shared memory by cp.async at the item's start "
        "(instead of v10's first part in registers), v18t: or its first four int8 parts (2 KiB per warp and part, "
        "the same shared memory; a build for each partial dtype); 3 stages (both groups)",
    24: "v19 with one softmax body for clean and masked blocks: a token's unchosen block by its row's max and "
        "exponent offset, the per-key causal compare only in a block reaching past a row's position (v18u)",
    26: "v5 with v24's one softmax body for the masked blocks (a token's unchosen block by its row's max and "
        "exponent offset, the causal compare only in a block reaching past a row's position), clean blocks in "
        "their own (bf16, both groups; v18v)",
    30: "v24 with Q as two e4m3 terms at one row scale (hi and the residual lo; S = Q_hi K^T + Q_lo K^T in one "
        "accumulator): Q to ~2^-8 instead of 2^-4, twice S's tensor work; int8 parts staged three deep (v18z)",
}
"""Compiled variants of the kernel (``variant=``); NOTES.md v10 has their times (v14w's 6-8 were correct and slower
or equal on every row: reverted, code in merge 7a16812; v15z's 9-13, consumers out of phase, correct, the step
1.6-3.7 % faster and the whole prefill unchanged: reverted, code in merge 338c501; v18's FP8 7 and 9, other stage
counts, within 1 % of 6 and 8; FP8 + ping-pong, 3-4 % slower at f = 0.9; 11, bf16 v5 + the fold prefetch, no gain;
v18p's 14, 12 with the next Q requested at the item's start, 0.1-1.6 % slower than 12; v18s's parts prefetched
into L2, one part staged, the mask per row half, the union's block ids from registers: no gain, removed; NOTES
v18s describes them; v18v's 25, bf16 with one body for every block as 24, 0.975-1.038x of 5, and 27, FP8 24 with
clean blocks apart as 26, 0.963-1.007x of 24, and 28, 26 at 2 stages with 2 staged bf16 parts, 0.77-0.83x of 26 at
f >= 0.9: removed)."""
DEFAULT_VARIANT = 26
"""v18v: H200, 128K, alternated with 5 in one process, the same output bit for bit (NOTES v18v): f = 0.9 1.024-1.035x,
f = 1 0.999-1.011x, the indexer's selections 1.007-1.010x."""
FP8_VARIANTS = (6, 8, 10, 12, 16, 19, 24, 30)
"""v18: the variants that take e4m3 transposed pages (``kernels.msa.widen.widen_and_transpose``) instead of bf16."""
FP8_DIAG_VARIANTS = {90: "v10, the staged bf16 Q not quantised (sQ keeps the previous tile's Q)",
                     91: "v12 without the fused merge's fold", 92: "v12 with no union block masked",
                     95: "v18u's 24 with S's product issued twice (bf16 parts; 16 query heads per KV head)"}
"""Timing diagnostics (FP8, v18p, v18s, v18y): their output is WRONG by design; only the benches' variant options
(``fp8_cache_bench --step-variants``, ``prefill_profile --fp8-step``, ``step_variant_bench``) use them, to split the
step's time (NOTES.md v18p, v18s) or bound a change's cost (v18y: 95, the least a two-term Q adds)."""
FP8_DEFAULT_VARIANT = 24
"""v18u: H200, 128K, alternated with 19 in one process, the same output bit for bit (NOTES v18u). 19 (v18s),
alternated with 12 in one process: f = 0.9 17.06-17.12 ms (12: 17.86-17.89), f = 1
13.38-13.42 (12: 13.33-13.36), the indexer's selections 29.20-29.56 (12: 29.02-29.81); v18p: 12 vs 10, f = 0.9
17.63-17.73 vs 18.81-18.83."""
FP8_TWO_TERM_Q_VARIANT = 30
"""v18z: the FP8 step a call with ``fp8_q_terms=2`` runs (24 with Q as two e4m3 terms; both groups)."""
GROUP8_VARIANTS = (5, 16, 19, 24, 26, 30)
"""v18r: the variants built for 8 query heads per KV head (M3 at TP 8): the bf16 default, FP8 16 (12 without its
first-part load, whose registers spill at GROUP 8), 19 and 24, and bf16 26; GROUP 16 takes every other variant."""
GROUP8_ONLY = (16,)
GROUP8_DEFAULT_VARIANT = 26
"""v18v: 26 vs 5 as at 16 heads: f = 0.9 1.031-1.034x, f = 1 0.998-1.010x, the indexer's selections 0.994-1.000x."""
GROUP8_FP8_DEFAULT_VARIANT = 24
"""v18u: 24 vs 19 as at 16 heads (NOTES v18u); v18s: 19 f = 0.9 9.13 ms vs 16's 9.44 (1.03x), f = 1 and the
indexer's selections equal."""


def group_variants(group: int) -> tuple[int, ...]:
    return GROUP8_VARIANTS if group == 8 else tuple(v for v in VARIANTS if v not in GROUP8_ONLY)


DEFAULT_NAMES = {(16, False): "DEFAULT_VARIANT", (16, True): "FP8_DEFAULT_VARIANT",
                 (8, False): "GROUP8_DEFAULT_VARIANT", (8, True): "GROUP8_FP8_DEFAULT_VARIANT"}
"""(query heads per KV head, FP8 step) -> the module global naming the variant a call takes when it names none."""


def default_variant(group: int, fp8: bool) -> int:
    """The variant a call gets when it names none (the defaults are read at the call: benches set them)."""
    return globals()[DEFAULT_NAMES[8 if group == 8 else 16, fp8]]


@contextlib.contextmanager
def variant_as_default(group: int, fp8: bool, variant: int) -> Iterator[None]:
    """Within the block, calls that name no variant take ``variant`` (benches and tests compare variants through the
    whole prefill, which names none)."""
    name = DEFAULT_NAMES[group, fp8]
    old = globals()[name]
    globals()[name] = variant
    try:
        yield
    finally:
        globals()[name] = old


DEFAULT_PER_SM = 1
"""A persistent grid (1 CTA per SM walking the work list): with variant 5 the next tile's Q loads during the last
blocks of the current one (H200: 16.4 vs 17.6 ms for variant 3 per item at 128K f = 1; NOTES.md v10)."""
NVCC_FLAGS = (
    "-std=c++17", "-O3", "--expt-relaxed-constexpr", "-gencode=arch=compute_90a,code=sm_90a",
    "-Xcompiler", "-fPIC",
)
"""Each source's compile flags. sm_90a (not sm_90): wgmma and setmaxnreg exist only there (HOPPER.md: the -gencode
form)."""
LINK_FLAGS = ("-gencode=arch=compute_90a,code=sm_90a", "-shared")
"""The objects' link into one library (no relocatable device code: each object carries its own SASS)."""


LOG = logging.getLogger("kernels.msa.cuda")
SM = (9, 0)
"""The one compute capability the library is built for (sm_90a)."""


class CudaBuildError(RuntimeError):
    """nvcc or the CUTLASS headers are missing, or the kernel did not compile."""


def cutlass_include(override: Path | None = None) -> Path:
    """CUTLASS/CuTe's include directory, from the installed ``nvidia-cutlass`` wheel (or ``override``: a copy of
    its headers, e.g. on a machine without the wheel)."""
    if override is not None:
        if not (Path(override) / "cute" / "tensor.hpp").is_file():
            raise CudaBuildError(f"no CuTe headers under {override}")
        return Path(override)
    try:
        import cutlass_library
    except ImportError as exc:
        raise CudaBuildError("CUTLASS headers not found: pip install nvidia-cutlass (extra 'gpu-kernels')") from exc
    inc = Path(cutlass_library.__file__).resolve().parent / "source" / "include"
    if not (inc / "cute" / "tensor.hpp").is_file():
        raise CudaBuildError(f"the nvidia-cutlass wheel has no CuTe headers under {inc}")
    return inc


def find_nvcc() -> Path:
    """nvcc from PATH, else CUDA_HOME / the usual install prefix."""
    found = shutil.which("nvcc")
    candidates = [Path(found)] if found else []
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates.append(Path(home) / "bin" / "nvcc")
    for path in candidates:
        if path.is_file():
            return path
    raise CudaBuildError("nvcc not found (PATH, CUDA_HOME, /usr/local/cuda)")


def compile_command(nvcc: Path, include: Path, source: Path, output: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [str(nvcc), *NVCC_FLAGS, *extra, f"-I{include}", f"-I{HERE}", "-c", str(source), "-o", str(output)]


def link_command(nvcc: Path, objects: list[Path], output: Path) -> list[str]:
    return [str(nvcc), *LINK_FLAGS, *map(str, objects), "-o", str(output)]


def run_nvcc(command: list[str]) -> None:
    """One nvcc call; a failure raises with its first error line and the log's tail."""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), "no error line")
        raise CudaBuildError(f"nvcc failed ({proc.returncode}): {first.strip()}\n{proc.stderr[-4000:]}")


@functools.cache  # the sources do not change within a process
def library_name(extra_flags: tuple[str, ...] = ()) -> str:
    """File name of the built library: a hash of the sources and flags (the CUTLASS version is pinned)."""
    digest = hashlib.sha256()
    for path in (*SOURCES, *HEADERS):
        digest.update(path.read_bytes())
    digest.update(" ".join((*NVCC_FLAGS, *extra_flags, *LINK_FLAGS)).encode())
    return f"tile_outer_sm90-{digest.hexdigest()[:16]}.so"


def default_cache() -> Path:
    """Where built libraries live: ``$M3LAB_MSA_CUDA_CACHE``, else ``~/.cache/m3lab/msa_sm90``."""
    env = os.environ.get("M3LAB_MSA_CUDA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "m3lab" / "msa_sm90"


def build(cache_dir: Path | None = None, include: Path | None = None, extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile the kernel into a shared library, unless ``cache_dir`` already holds this build; returns its path."""
    cache = Path(cache_dir) if cache_dir else default_cache()
    lib = cache / library_name(extra_flags)
    if lib.is_file():
        return lib
    nvcc, include = find_nvcc(), cutlass_include(include)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        objects = [Path(tmp) / f"{source.stem}.o" for source in SOURCES]
        # the sources compile in parallel (each nvcc is one process): 93 s, not ~132 s, on 2 cores
        with ThreadPoolExecutor(max_workers=len(SOURCES)) as pool:
            list(pool.map(run_nvcc, [compile_command(nvcc, include, source, obj, extra_flags)
                                     for source, obj in zip(SOURCES, objects, strict=True)]))
        out = Path(tmp) / lib.name
        run_nvcc(link_command(nvcc, objects, out))
        os.replace(out, lib)  # atomic: concurrent builders never see a half-written library
    return lib


class _Params(ctypes.Structure):
    """Mirror of TileOuterParams in tile_outer_sm90.h (field order and types must match)."""
    _fields_ = [
        *[(name, ctypes.c_void_p) for name in (
            "q", "out", "partial_o", "partial_lse", "union_blocks", "pages", "count", "clean", "tokmask", "carrier",
            "direct", "work", "num_work", "positions")],
        *[(name, ctypes.c_int64) for name in ("stride_qt", "stride_qh", "stride_ot", "stride_oh")],
        *[(name, ctypes.c_int32) for name in (
            "num_tokens", "num_tiles", "num_kv_heads", "num_pages", "max_union", "top_k", "use_clean")],
        ("scale_log2", ctypes.c_float),
        ("rest", ctypes.c_void_p),
        ("fuse_merge", ctypes.c_int32),
        *[(name, ctypes.c_void_p) for name in ("partial_scale", "carrier_o", "carrier_lse")],
        ("v_scale", ctypes.c_float),
        ("group", ctypes.c_int32),
        ("tile_first", ctypes.c_void_p),
    ]


class _KvParams(ctypes.Structure):
    """Mirror of KvOuterParams in kv_outer_sm90.h (field order and types must match)."""
    _fields_ = [
        *[(name, ctypes.c_void_p) for name in (
            "q", "partial_o", "partial_lse", "perm", "row_ptr", "work_seg", "work_chunk", "block_table", "seq_lens",
            "positions")],
        *[(name, ctypes.c_int64) for name in ("stride_qt", "stride_qh", "stride_btr")],
        *[(name, ctypes.c_int32) for name in (
            "num_tokens", "num_segs", "num_work", "blocks_per_head", "max_blocks", "num_kv_heads", "num_pages",
            "top_k", "chunk")],
        ("scale_log2", ctypes.c_float),
        ("partial_scale", ctypes.c_void_p),
        ("group", ctypes.c_int32),
    ]


_LIB: list[ctypes.CDLL] = []


def load(cache_dir: Path | None = None, include: Path | None = None) -> ctypes.CDLL:
    """The kernel's library, built on first use (later calls return the loaded one)."""
    if _LIB:
        return _LIB[0]
    _LIB.append(open_library(build(cache_dir, include)))
    return _LIB[0]


def open_library(path: Path) -> ctypes.CDLL:
    """A built library with its entry points typed (``load`` keeps one per process; benches open older builds to
    time them beside it)."""
    lib = ctypes.CDLL(str(path))
    lib.msa_tile_outer_sm90.restype = ctypes.c_int
    lib.msa_tile_outer_sm90.argtypes = [ctypes.POINTER(_Params), ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.msa_tile_outer_sm90_error.restype = ctypes.c_char_p
    lib.msa_tile_outer_sm90_error.argtypes = [ctypes.c_int]
    lib.msa_tile_outer_sm90_smem_bytes.argtypes = [ctypes.c_int]
    lib.msa_kv_outer_sm90.restype = ctypes.c_int
    lib.msa_kv_outer_sm90.argtypes = [ctypes.POINTER(_KvParams), ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                      ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.msa_kv_outer_sm90_smem_bytes.argtypes = [ctypes.c_int]
    return lib


_UNAVAILABLE: list[str] = []
"""Why the library cannot be used in this process (set once by ``prepare``/``library_reason``; empty: unknown)."""
_LOGGED: set[str] = set()


def prepare(cache_dir: Path | None = None, include: Path | None = None) -> str | None:
    """Build (once, cached by source hash) and load the library ahead of any request; None when it is ready, else
    the one-line reason it is not (also logged once). Never raises: callers fall back to Triton."""
    if _LIB:
        return None
    if _UNAVAILABLE:
        return _UNAVAILABLE[0]
    try:
        load(cache_dir, include)
        return None
    except (CudaBuildError, OSError, AttributeError) as exc:
        reason = _one_line(exc)
    _UNAVAILABLE.append(reason)
    _log_once(f"CUDA tile-outer kernel unavailable, Triton used: {reason}")
    return reason


def _one_line(exc: BaseException) -> str:
    """The first line of an error (nvcc's log stays in the exception, not in the fallback's log line)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _log_once(message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        LOG.warning(message)


def library_reason(cache_dir: Path | None = None) -> str | None:
    """Why the library cannot be used now without building it (None: loaded, or loadable from the cache). A
    cache hit is loaded here (~ms); a miss is not built: it names the missing tool or the build command."""
    if _LIB:
        return None
    if _UNAVAILABLE:
        return _UNAVAILABLE[0]
    if not ((Path(cache_dir) if cache_dir else default_cache()) / library_name()).is_file():
        try:
            find_nvcc()
            cutlass_include()
        except CudaBuildError as exc:
            return _one_line(exc)
        return "not built yet: run `python -m kernels.msa.cuda build` (the vLLM plugin builds it at start)"
    return prepare(cache_dir)


def device_reason(device: torch.device) -> str | None:
    """Why ``device`` cannot run the sm_90a kernel (None: it can)."""
    if device.type != "cuda":
        return f"device {device.type} is not CUDA"
    cap = torch.cuda.get_device_capability(device)
    if tuple(cap) != SM:
        return f"device is sm_{cap[0]}{cap[1]}, the kernel is built for sm_90a only"
    return None


def choose(q: torch.Tensor, kv_cache: torch.Tensor, partial_o: torch.Tensor, tile_t: int,
           k_scale: float = 1.0, v_scale: float = 1.0) -> str | None:
    """``tile_impl="auto"``: None when the CUDA step takes this call, else why not (logged once per reason). No
    host sync and no build: a few attribute checks and a file test the first time."""
    return _choice("tile-outer", q, lambda: check_inputs(q, kv_cache, partial_o, tile_t), k_scale, v_scale)


def _choice(step: str, q: torch.Tensor, input_problems: Callable[[], list[str]], k_scale: float,
            v_scale: float) -> str | None:
    """The shared policy of ``choose`` / ``choose_kv``: device, then the step's inputs and K/V scales, then the
    built library; the first failing level's reasons, joined and logged once (None: CUDA runs the step)."""
    problems = [r for r in (device_reason(q.device),) if r]
    if not problems:
        problems = input_problems()
        if k_scale != 1.0 or v_scale != 1.0:
            problems.append("K/V scales (fp8 cache) are not taken")
    if not problems:
        reason = library_reason()
        problems = [reason] if reason else []
    if problems:
        _log_once(f"MSA {step} step on Triton: {'; '.join(problems)}")
        return "; ".join(problems)
    return None


MAX_FOLD_SLOTS = 32
"""Largest top_k the tile-outer kernel takes (kMaxFoldSlots in tile_outer_sm90.cu: its fused merge loads a row's
slot entries in one batch, v16)."""
PARTIAL_DTYPES = (torch.bfloat16, torch.int8)
"""KV-outer partials the kernel reads (fused merge) and writes beside (carrier parts: bf16 into the partials, or into
a bf16 side buffer when they are int8, v12m)."""


def check_inputs(q: torch.Tensor, kv_cache: torch.Tensor, partial_o: torch.Tensor, tile_t: int,
                 fp8: bool = False) -> list[str]:
    """Every reason this kernel cannot take these inputs (empty: it can). ``fp8``: for the FP8 variants, whose
    ``kv_cache`` is e4m3 transposed pages."""
    problems = []
    kv_dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
    if q.dtype != torch.bfloat16 or kv_cache.dtype != kv_dtype or partial_o.dtype not in PARTIAL_DTYPES:
        problems.append(f"bf16 q, {kv_dtype} kv cache and bf16 or int8 partials only, got {q.dtype} / "
                        f"{kv_cache.dtype} / {partial_o.dtype}")
    if q.dim() != 3 or q.shape[2] != HEAD_DIM or kv_cache.dim() != 4 or kv_cache.shape[3] != 2 * HEAD_DIM:
        problems.append(f"head_dim {HEAD_DIM} only, got q {tuple(q.shape)}, kv {tuple(kv_cache.shape)}")
    elif q.shape[1] not in [g * kv_cache.shape[1] for g in GROUPS]:
        problems.append(f"{' or '.join(map(str, GROUPS))} query heads per KV head only, got {q.shape[1]} / "
                        f"{kv_cache.shape[1]}")
    elif tile_t != TILE_ROWS // (q.shape[1] // kv_cache.shape[1]):
        problems.append(f"tiles of {TILE_ROWS} rows ({TILE_ROWS // (q.shape[1] // kv_cache.shape[1])} tokens) only, "
                        f"got {tile_t} tokens")
    if q.stride(2) != 1 or q.stride(0) % 8 or q.stride(1) % 8 or q.data_ptr() % 16:
        problems.append("q needs a unit last stride and 16-byte aligned rows")
    align = 16 // kv_cache.element_size()  # TMA: 16-byte strides
    if kv_cache.stride(3) != 1 or any(s % align for s in kv_cache.stride()[:3]) or kv_cache.data_ptr() % 16:
        problems.append("kv_cache needs a unit last stride and 16-byte aligned rows (TMA)")
    if not partial_o.is_contiguous() or partial_o.data_ptr() % 16:
        problems.append("partial_o must be contiguous and 16-byte aligned (the fused merge stages parts by 16-byte "
                        "copies, v18s)")
    if partial_o.dim() == 5 and partial_o.shape[2] > MAX_FOLD_SLOTS:
        problems.append(f"top_k <= {MAX_FOLD_SLOTS} only (the fused merge reads a row's slots in one batch), "
                        f"got {partial_o.shape[2]}")
    return problems


def tile_outer_attention_cuda(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    positions: torch.Tensor,
    requests: torch.Tensor,
    split,
    scale: float,
    out: torch.Tensor,
    partial_o: torch.Tensor,
    partial_lse: torch.Tensor,
    tile_t: int | None = None,
    use_clean: bool = True,
    per_sm: int = DEFAULT_PER_SM,
    variant: int | None = None,
    fuse_merge: bool = False,
    partial_scale: torch.Tensor | None = None,
    carrier_parts: CarrierParts | None = None,
    v_scale: float = 1.0,
) -> None:
    """``tile_outer_attention`` (v8 contract) on the sm_90a kernel. ``seq_lens`` / ``requests`` are accepted for
    the same signature: a key is visible when its position <= the token's, which already keeps it < seq_len.
    ``per_sm``: CTAs per SM walking the work list (0: one CTA per possible work item, as the Triton default);
    ``tile_t``: tokens per tile of ``split`` (None: ``TILE_ROWS`` // query heads per KV head, the only size taken);
    ``variant``: one of ``group_variants`` (None: ``default_variant``, read at the call); ``fuse_merge``: as the Triton
    kernel's (v9): the rows' KV-outer parts (``partial_o`` / ``partial_lse``, already written; slots in
    ``split.rest``) are folded in on chip and every row of a tile in the work list is written to ``out`` (the merge
    then skips ``split.owned``).
    int8 partials (v12m, ``partial_scale``: their fp32 row scales, ``merge.store_part``'s format): the fused merge
    decodes them on chip; without it the carrier parts go to ``carrier_parts`` (``merge.CarrierParts``, bf16), which
    is then required. ``carrier_parts`` with bf16 partials: carrier parts there too.
    FP8 step (v18): ``kv_cache`` e4m3 transposed pages (``kernels.msa.widen.widen_and_transpose``; ``split.pages``
    numbered into them), ``scale`` with K's scale in it, ``v_scale`` V's; the variant defaults to
    ``FP8_DEFAULT_VARIANT``."""
    from kernels.msa.merge import LOG2E

    fp8 = kv_cache.dtype == torch.float8_e4m3fn
    group = q.shape[1] // max(1, kv_cache.shape[1])
    problems = check_inputs(q, kv_cache, partial_o, TILE_ROWS // max(1, group) if tile_t is None else tile_t, fp8)
    variant = default_variant(group, fp8) if variant is None else variant
    if variant not in VARIANTS and variant not in FP8_DIAG_VARIANTS:
        problems.append(f"variant must be one of {sorted(VARIANTS)}, got {variant}")
    elif group in GROUPS and variant not in group_variants(group) and variant not in FP8_DIAG_VARIANTS:
        problems.append(f"{group} query heads per KV head: variants {list(group_variants(group))} only, got {variant}")
    elif (variant in FP8_VARIANTS or variant in FP8_DIAG_VARIANTS) != fp8:
        problems.append(f"variants {list(FP8_VARIANTS)} take e4m3 transposed pages and only they do "
                        f"(variant {variant}, cache {kv_cache.dtype})")
    if not fp8 and v_scale != 1.0:
        problems.append("v_scale is taken by the FP8 variants only")
    if fuse_merge and (not partial_lse.is_contiguous() or partial_lse.data_ptr() % 16):
        problems.append("partial_lse must be contiguous and 16-byte aligned (the fused merge stages it by 16-byte "
                        "copies, v18s)")
    if (partial_o.dtype == torch.int8) != (partial_scale is not None):
        problems.append("int8 partials need their row scales (partial_scale), and only they take one")
    elif fuse_merge and partial_scale is not None and (not partial_scale.is_contiguous() or partial_scale.data_ptr() % 16):
        problems.append("partial_scale must be contiguous and 16-byte aligned (the fused merge stages it by 16-byte "
                        "copies, v18t)")
    if partial_o.dtype == torch.int8 and not fuse_merge and carrier_parts is None:
        problems.append("int8 partials without the fused merge need carrier_parts (a bf16 side buffer)")
    if carrier_parts is not None and (carrier_parts.o.dtype != torch.bfloat16 or not carrier_parts.o.is_contiguous()
                                      or not carrier_parts.lse.is_contiguous()):
        problems.append("carrier_parts must be contiguous, bf16 parts and fp32 log2-sum-exps")
    if problems:
        raise ValueError("; ".join(problems))
    num_kv_heads, num_tiles = split.union_size.shape
    if num_tiles == 0:
        return
    pos = positions if positions.dtype == torch.int32 else positions.to(torch.int32)
    prm = _Params(
        q.data_ptr(), out.data_ptr(), partial_o.data_ptr(), partial_lse.data_ptr(), split.union.data_ptr(),
        split.pages.data_ptr(), split.union_size.data_ptr(), split.clean.data_ptr(), split.tokmask.data_ptr(),
        split.carrier.data_ptr(), split.direct.data_ptr(), split.work.data_ptr(), split.num_work.data_ptr(),
        pos.data_ptr(), q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        q.shape[0], num_tiles, num_kv_heads, kv_cache.shape[0], split.union.shape[2], split.rest.shape[2],
        int(use_clean), scale * LOG2E, split.rest.data_ptr(), int(fuse_merge),
        partial_scale.data_ptr() if partial_scale is not None else None,
        carrier_parts.o.data_ptr() if carrier_parts is not None else None,
        carrier_parts.lse.data_ptr() if carrier_parts is not None else None,
        float(v_scale), group, split.tile_first.data_ptr(),
    )
    items = num_tiles * num_kv_heads
    grid = items if per_sm <= 0 else min(items, per_sm * torch.cuda.get_device_properties(q.device).multi_processor_count)
    stream = torch.cuda.current_stream(q.device).cuda_stream
    err = load().msa_tile_outer_sm90(ctypes.byref(prm), kv_cache.data_ptr(), kv_cache.stride(0),
                                         kv_cache.stride(1), kv_cache.stride(2), grid, variant, stream)
    if err != 0:
        raise RuntimeError(f"tile_outer_sm90 launch failed: {load().msa_tile_outer_sm90_error(err).decode()}")


KV_DEFAULT_PER_SM = 1
"""The KV-outer kernel's grid: CTAs per SM (1: 224 KiB of shared memory each), each walking the work list."""
KV_VARIANTS = {2: "1 K/V stage, 8 Q stages, metadata warp", 3: "2 K/V stages, 4 Q stages, metadata warp",
               6: "v2 + the softmax's latency cut (v13q)", 7: "v3 + the softmax's latency cut (v13q)"}
"""Compiled variants of the KV-outer kernel (``variant=``), each with bf16 or int8 parts; NOTES.md v12n and v13q have
their times (v12k's variants 0 and 1, without the metadata warp, lost on every row and were removed; v14v's 10-12,
stmatrix staging and row sums by a wgmma, were correct and not faster: reverted, code in merge 2491747; v15y's 13-14,
FA3's cooperative 128-row tile, the same: code in merge f1df290)."""
KV_INT8_VARIANTS = (2, 3, 6, 7)
"""The variants compiled with int8 parts too (v12n: all)."""
KV_DIAG_VARIANTS = {90: "v6, consumers skip S / softmax / P V (memory-only time)",
                    91: "v6, no Q gathers (math + K/V + stores)", 92: "v6, no stores (Q gathers + K/V + math)"}
"""v13q timing diagnostics (bf16): their parts are WRONG by design; only kernels/bench/kv_outer_cuda_bench's
``--diag`` uses them, to split the stage's time (NOTES.md v13q)."""
KV_DEFAULT_VARIANT = 7
KV_DEFAULT_INT8_VARIANT = 7
"""v13q: variant 7 (v3's rings + the softmax's latency cut) for bf16 and int8 parts: whole default prefill, same
runs, vs the v12n defaults (bf16 v2, int8 v3) 1.04x on the 128K indexer row, 1.09x on the 32K chunk at 1M, f = 0.9
inside noise (NOTES.md v13q)."""
KV_GROUP8_VARIANTS = (7,)
"""v18r: the KV-outer variants built for 8 query heads per KV head (M3 at TP 8): the default, bf16 and int8 parts."""


def choose_kv(q: torch.Tensor, kv_cache: torch.Tensor, partial_dtype: torch.dtype | None = None,
              k_scale: float = 1.0, v_scale: float = 1.0) -> str | None:
    """``kv_impl="auto"`` (v12k): None when the CUDA KV-outer kernel takes this call, else why not (logged once per
    reason). No host sync and no build, as ``choose``."""
    return _choice("KV-outer", q, lambda: check_kv_inputs(q, kv_cache, partial_dtype), k_scale, v_scale)


def check_kv_inputs(q: torch.Tensor, kv_cache: torch.Tensor, partial_dtype: torch.dtype | None) -> list[str]:
    """Every reason the KV-outer kernel cannot take these inputs (empty: it can)."""
    problems = []
    if q.dtype != torch.bfloat16 or kv_cache.dtype != torch.bfloat16:
        problems.append(f"bf16 q / kv cache only, got {q.dtype} / {kv_cache.dtype}")
    if partial_dtype not in (None, q.dtype, torch.int8) or q.dtype != torch.bfloat16:
        problems.append(f"bf16 or int8 partials only, got {partial_dtype or q.dtype}")
    if q.dim() != 3 or q.shape[2] != HEAD_DIM or kv_cache.dim() != 4 or kv_cache.shape[3] != 2 * HEAD_DIM:
        problems.append(f"head_dim {HEAD_DIM} only, got q {tuple(q.shape)}, kv {tuple(kv_cache.shape)}")
    elif q.shape[1] not in [g * kv_cache.shape[1] for g in GROUPS]:
        problems.append(f"{' or '.join(map(str, GROUPS))} query heads per KV head only, got {q.shape[1]} / "
                        f"{kv_cache.shape[1]}")
    if q.dim() == 3 and (q.stride(2) != 1 or q.stride(0) % 8 or q.stride(1) % 8 or q.data_ptr() % 16):
        problems.append("q needs a unit last stride and 16-byte aligned rows (TMA)")
    if kv_cache.dim() == 4 and (kv_cache.stride(3) != 1 or any(s % 8 for s in kv_cache.stride()[:3])
                                or kv_cache.data_ptr() % 16):
        problems.append("kv_cache needs a unit last stride and 16-byte aligned rows (TMA)")
    return problems


def kv_outer_partials_cuda(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    csr: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int],
    positions: torch.Tensor,
    top_k: int,
    scale: float,
    chunk: int,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    partial_dtype: torch.dtype | None = None,
    per_sm: int = KV_DEFAULT_PER_SM,
    variant: int | None = None,
    out: tuple[torch.Tensor, torch.Tensor] | PartialBuffers | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``kernels.msa.prefill.kv_outer_partials`` (same inputs and outputs: partial_o [Hkv, T, top_k, G, 128] bf16 (G:
    query heads per KV head, 16 or, v18r, 8 with variant 7 only), or int8 with ``partial_dtype=torch.int8`` (v12n:
    ``merge.store_part``'s format), partial_lse fp32 [Hkv, T, top_k, G], the int8 parts' per-row fp32 scales (same
    shape; None for bf16)) on the sm_90a kernel; the Triton-only knobs (warps, stages, tile rows) have no meaning here. Entries the CSR does not list (-1 selections)
    are never written. ``out``: (partial_o, partial_lse[, partial_scale]) buffers to write into (contiguous, those
    shapes and dtypes), else new ones. ``variant``: one of ``KV_VARIANTS`` (None: ``KV_DEFAULT_VARIANT``, with int8
    ``KV_DEFAULT_INT8_VARIANT``; int8 needs one of ``KV_INT8_VARIANTS``)."""
    from kernels.msa.merge import LOG2E

    problems = check_kv_inputs(q, kv_cache, partial_dtype)
    if k_scale != 1.0 or v_scale != 1.0:
        problems.append("K/V scales (fp8 cache) are not taken")
    int8 = partial_dtype == torch.int8
    if variant is None:
        variant = KV_DEFAULT_INT8_VARIANT if int8 else KV_DEFAULT_VARIANT
    if variant not in KV_VARIANTS and (int8 or variant not in KV_DIAG_VARIANTS):
        problems.append(f"variant must be one of {sorted(KV_VARIANTS)}, got {variant}")
    elif int8 and variant not in KV_INT8_VARIANTS:
        problems.append(f"int8 partials need a variant of {list(KV_INT8_VARIANTS)}, got {variant}")
    elif q.shape[1] == 8 * kv_cache.shape[1] and variant not in KV_GROUP8_VARIANTS:
        problems.append(f"8 query heads per KV head: variants {list(KV_GROUP8_VARIANTS)} only, got {variant}")
    if not problems and q.shape[0] * kv_cache.shape[1] * top_k >= 2 ** 31:
        problems.append("2^31 or more selection entries (the kernel indexes entries in int32)")
    if problems:
        raise ValueError("; ".join(problems))
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = kv_cache.shape[1]
    perm, row_ptr, work_seg, work_chunk, num_segs = csr
    max_blocks = block_table.shape[1]
    group = num_heads // num_kv_heads
    shape = (num_kv_heads, num_tokens, top_k, group)
    o_dtype = torch.int8 if int8 else q.dtype
    if out is None:
        partial_o, partial_lse, partial_scale = partial_buffers(None, num_kv_heads, num_tokens, top_k, group,
                                                                head_dim, o_dtype, q.device)
    else:
        partial_o, partial_lse = out[0], out[1]
        partial_scale = out[2] if len(out) > 2 else None
        fp32 = [t for t in (partial_lse, partial_scale) if t is not None]
        if (tuple(partial_o.shape) != (*shape, head_dim) or partial_o.dtype != o_dtype or not partial_o.is_contiguous()
                or len(fp32) != 1 + int8 or any(tuple(t.shape) != shape or t.dtype != torch.float32
                                                 or not t.is_contiguous() for t in fp32)):
            extra = " + fp32 scales" if int8 else ""
            raise ValueError(f"out must be contiguous {o_dtype} {(*shape, head_dim)} and fp32 {shape}{extra} buffers")
    if num_tokens == 0 or work_seg.numel() == 0:
        return partial_o, partial_lse, partial_scale
    # the kernel's index types (no-ops for the CSR builders' and device_positions' outputs)
    perm = perm.to(torch.int32)
    row_ptr = row_ptr.to(torch.int64)
    work_seg, work_chunk = work_seg.to(torch.int32), work_chunk.to(torch.int32)
    table = block_table.to(torch.int32)
    lens = seq_lens.to(torch.int32)
    pos = positions.to(torch.int32)
    prm = _KvParams(
        q.data_ptr(), partial_o.data_ptr(), partial_lse.data_ptr(), perm.data_ptr(), row_ptr.data_ptr(),
        work_seg.data_ptr(), work_chunk.data_ptr(), table.data_ptr(), lens.data_ptr(), pos.data_ptr(),
        q.stride(0), q.stride(1), table.stride(0),
        num_tokens, num_segs, work_seg.numel(), block_table.shape[0] * max_blocks, max_blocks, num_kv_heads,
        kv_cache.shape[0], top_k, chunk, scale * LOG2E, None if partial_scale is None else partial_scale.data_ptr(),
        group,
    )
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    grid = work_seg.numel() if per_sm <= 0 else min(work_seg.numel(), per_sm * sms)
    stream = torch.cuda.current_stream(q.device).cuda_stream
    err = load().msa_kv_outer_sm90(ctypes.byref(prm), kv_cache.data_ptr(), kv_cache.stride(0), kv_cache.stride(1),
                                   kv_cache.stride(2), grid, variant, stream)
    if err != 0:
        raise RuntimeError(f"kv_outer_sm90 launch failed: {load().msa_tile_outer_sm90_error(err).decode()}")
    return partial_o, partial_lse, partial_scale
