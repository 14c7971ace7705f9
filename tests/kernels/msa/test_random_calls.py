"""Seeded random calls of the prefill and decode kernels against the fp32 reference, every output row checked.

The fixed-shape tests pin what each version changed; these draw what a server hands the kernels and nobody wrote down
beforehand: 1-3 requests of any length (single tokens, tails past the last full tile, context before the queries), 16
or 8 query heads per KV head, 1-4 KV heads, top_k 8 / 16 / 32 / 64 (64: past the CUDA step's limit, so the fallback is
drawn too), the indexer's selections (with sink and local blocks) or synthetic locality at any share, slots shuffled,
-1 holes anywhere and, in some calls, blocks past a token's own position (the reference masks them causally; a kernel
that trusts "only the local block reaches past the position" would read the future), and q as a strided view into a
fused QKV buffer (NaN around it) in half the calls. Each call runs every path a server can reach (default, KV-outer
only, the Triton kernels, int8 parts, the unfused merge; on an fp8 cache: widened, the FP8 step with one and two Q
terms) and one workspace is reused across the calls, as a server's is. The error is per (token, query head): a wrong
block for one token cannot hide in a whole-output norm. Each call is also repeated and each of its requests run alone:
both must give the batched output's bits (batch invariance, kernels/msa NOTES v19); and each request cut into two
chunks at a tile edge of positions must give its whole prefill's bits (chunk invariance, v19b); on the CPU these
two run with ``tl.dot`` made row-position independent, as a GPU's MMA is (conftest ``row_exact_dot``).

CPU under TRITON_INTERPRET=1 (fp32, head_dim 32, small calls); on a GPU bf16 at head_dim 128 with the CUDA kernels
where the library is built (``python -m kernels.msa.cuda build``)."""
from __future__ import annotations

import dataclasses
import functools
import os
import random
from dataclasses import dataclass

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa import sparse_attention, token_positions  # noqa: E402
from kernels.msa.decode import sparse_decode_triton  # noqa: E402
from kernels.msa.indexer import msa_index_topk_triton  # noqa: E402
from kernels.msa.inputs import MSACase, dequantize_kv_fp8, local_selection, make_case, quantize_kv_fp8  # noqa: E402
from kernels.msa.prefill import sparse_attention_triton  # noqa: E402
from kernels.msa.reference import BLOCK_SIZE  # noqa: E402
from kernels.msa.tile_outer import tile_tokens  # noqa: E402
from kernels.msa.workspace import PrefillWorkspace  # noqa: E402
from tests.kernels.msa.checks import DEVICE, DTYPE, GPU, HEAD_DIM, shuffled_slots  # noqa: E402

PREFILL_SEEDS = range(12) if GPU else range(8)
DECODE_SEEDS = range(6) if GPU else range(3)

BF16_PATHS: dict[str, dict] = {
    "default": {},
    "kv-outer only": {"max_union": 0},
    "triton": {"tile_impl": "triton", "kv_impl": "triton"},
    "int8 parts": {"partial_dtype": torch.int8},
    "unfused merge": {"fuse_merge": False},
}
FP8_PATHS: dict[str, dict] = {
    "fp8 widened": {},
    "fp8 step": {"fp8_step": True},
    "fp8 step, two-term Q": {"fp8_step": True, "fp8_q_terms": 2},
}
ROW_TOL = {  # largest error of one (token, query head) row: ||got - want|| / ||want||
    "default": 1e-2, "kv-outer only": 1e-2, "triton": 1e-2, "unfused merge": 1e-2, "fp8 widened": 1e-2,
    "int8 parts": 3e-2, "fp8 step": 1.5e-1, "fp8 step, two-term Q": 8e-2, "decode": 1e-2, "decode fp8": 1e-2,
}
"""On the GPU (bf16 outputs); the CPU runs fp32 (1e-4 for all). The worst row over the GPU draws on an H200
(2026-12-03, kernels/bench/results/random_calls_v18z_*): bf16 paths 3.8e-3, int8 parts 1.04e-2, fp8 widened 4.3e-3,
the FP8 step 9.4e-2 (median row 3e-2: Q and P in e4m3, NOTES v18y), two-term Q 3.8e-2, decode 3.1e-3. A wrong or
missing block for one token gives O(1) on its rows."""


@dataclass(frozen=True)
class RandomCall:
    """One drawn prefill call (the inputs themselves come from ``make_case`` with ``seed``)."""

    seq_lens: tuple[int, ...]
    q_lens: tuple[int, ...]
    group: int
    num_kv_heads: int
    top_k: int
    kind: str
    """"indexer" or "f=<share>" (``inputs.local_selection``)."""
    init_blocks: int
    local_blocks: int
    holes: float
    """Share of each row's ids (the local block's included) replaced by -1; every row keeps one id."""
    future: bool
    """Holes of tokens with later blocks in their request take one of those (wholly past the token's position)."""
    shuffle: bool
    seed: int
    q_in_qkv: bool = False
    """q is a strided view into a fused [tokens, (heads + 2 kv_heads) * head_dim] projection, as vLLM slices it (the
    rest of each row NaN, so a kernel that assumes a contiguous q reads NaN)."""


def draw_call(seed: int, gpu: bool) -> RandomCall:
    """A call drawn from ``seed``; smaller on the CPU (the interpreter runs each program in Python)."""
    rng = random.Random(seed)
    max_q, max_ctx = (700, 9000) if gpu else (40, 700)
    q_lens, seq_lens = [], []
    for _ in range(rng.randint(1, 3)):
        q_len = rng.choice([1, rng.randint(2, 70), rng.randint(2, max_q)])
        ctx = rng.choice([0, rng.randint(1, BLOCK_SIZE), rng.randint(1, max_ctx)])
        q_lens.append(q_len)
        seq_lens.append(ctx + q_len)
    return RandomCall(
        seq_lens=tuple(seq_lens), q_lens=tuple(q_lens), group=rng.choice([16, 8]),
        num_kv_heads=rng.choice([1, 2, 4] if gpu else [1, 2]), top_k=rng.choice([16, 16, 8, 32, 64]),
        kind=rng.choice(["indexer", "f=0.5", "f=0.9", "f=1.0"]), init_blocks=rng.choice([0, 1]),
        local_blocks=rng.choice([1, 2]), holes=rng.choice([0.0, 0.0, 0.2]), future=rng.random() < 0.3,
        shuffle=rng.random() < 0.5, seed=seed, q_in_qkv=_later_draw(seed))


def _later_draw(seed: int) -> bool:
    """Fields added after the first GPU record come from their own stream, so the earlier fields' draws (and the
    record in kernels/bench/results/random_calls_v18z_*) stay as they were."""
    return random.Random(seed + 7777).random() < 0.5


def call_case(call: RandomCall) -> MSACase:
    case = make_case(list(call.seq_lens), list(call.q_lens), num_heads=call.group * call.num_kv_heads,
                     num_kv_heads=call.num_kv_heads, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE, seed=call.seed)
    return dataclasses.replace(case, q=in_qkv(case.q, call.num_kv_heads)) if call.q_in_qkv else case


def in_qkv(q: torch.Tensor, num_kv_heads: int) -> torch.Tensor:
    """The same values as a view into a fused QKV row buffer (token stride (heads + 2 kv_heads) * head_dim), the
    K / V columns NaN."""
    tokens, heads, head_dim = q.shape
    qkv = torch.full((tokens, (heads + 2 * num_kv_heads) * head_dim), float("nan"), dtype=q.dtype, device=q.device)
    view = qkv[:, :heads * head_dim].unflatten(1, (heads, head_dim))
    view.copy_(q)
    return view


def call_selection(call: RandomCall, case: MSACase) -> torch.Tensor:
    """The call's selection [num_kv_heads, tokens, top_k] int32 on DEVICE, perturbations applied."""
    if call.kind == "indexer":
        sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                    case.seq_lens, top_k=call.top_k, init_blocks=call.init_blocks,
                                    local_blocks=call.local_blocks, max_query_len=case.max_query_len)
    else:
        share = float(call.kind.removeprefix("f="))
        sel = local_selection(case.query_start_loc, case.seq_lens, call.num_kv_heads, share, top_k=call.top_k,
                              seed=call.seed)
    return perturb(sel.cpu(), case, call).to(DEVICE).contiguous()


def perturb(sel: torch.Tensor, case: MSACase, call: RandomCall) -> torch.Tensor:
    """Holes, future blocks and slot order as ``call`` says; each row keeps at least one valid id."""
    gen = torch.Generator().manual_seed(call.seed + 1)
    sel = sel.clone().long()
    if call.holes:
        hole = torch.rand(sel.shape, generator=gen) < call.holes
        first_valid = (sel >= 0).long().argmax(-1, keepdim=True)
        hole.scatter_(-1, first_valid, False)
        sel = torch.where(hole, -1, sel)
    if call.future:
        local, blocks = _token_blocks(case)
        later = blocks - 1 - local  # blocks of the request wholly past each token's position
        pick = local + 1 + (torch.rand(later.shape, generator=gen) * later.clamp(min=1)).long()
        free = sel < 0
        slot = free.long().argmax(-1)  # the row's first hole
        take = free.any(-1) & (later > 0)[None, :]
        rows = take.nonzero(as_tuple=True)
        sel[rows[0], rows[1], slot[rows]] = pick[rows[1]]
    if call.shuffle:
        sel = sel.gather(-1, torch.rand(sel.shape, generator=gen).argsort(-1))
    return sel.to(torch.int32)


def _token_blocks(case: MSACase) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: its own (local) block and its request's block count."""
    req, pos = token_positions(case.query_start_loc, case.seq_lens)
    blocks = (case.seq_lens.cpu().long() + BLOCK_SIZE - 1) // BLOCK_SIZE
    return pos // BLOCK_SIZE, blocks[req]


def row_errors(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """[tokens, heads] ||got - want|| / ||want|| in fp64 (inf where got is not finite)."""
    got, want = got.double().cpu(), want.double().cpu()
    err = (got - want).norm(dim=-1) / want.norm(dim=-1).clamp_min(1e-30)
    return torch.where(torch.isfinite(got).all(-1), err, torch.inf)


def row_tol(path: str) -> float:
    return ROW_TOL[path] if GPU else 1e-4


def assert_rows_close(path: str, call: object, got: torch.Tensor, want: torch.Tensor) -> None:
    err = row_errors(got, want)
    print(f"row error {path:22s} max {float(err.max()):.3g} median {float(err.median()):.3g} {call}")  # pytest -s
    worst = int(err.flatten().argmax())
    token, head = divmod(worst, err.shape[1])
    assert float(err.max()) <= row_tol(path), (
        f"{path}: token {token} head {head} off by {float(err.max()):.3g} (median row {float(err.median()):.3g}) "
        f"in {call}")


@pytest.fixture(scope="module")
def workspace() -> PrefillWorkspace:
    """One workspace for every random prefill call of the module: calls of all sizes reuse its buffers, as a
    server's forward passes do (a buffer a call trusts to be clean would show here)."""
    return PrefillWorkspace()


def cuda_paths_ready() -> bool:
    """Whether the CUDA kernels run here: an sm_90 GPU and the library built (or loadable from its cache; the
    toolchain is not needed for a prebuilt library)."""
    if not GPU:
        return False
    from kernels.msa import cuda

    return cuda.device_reason(torch.device(DEVICE)) is None and cuda.library_reason() is None


def test_draws_cover_the_space():
    """The seeds the GPU runs draw every kind, both groups, top_k past the CUDA limit, holes, future blocks, single
    tokens and context: a change to ``draw_call`` that narrows what is tested fails here."""
    calls = [draw_call(s, gpu=True) for s in range(12)]  # the GPU run's PREFILL_SEEDS
    assert {c.kind for c in calls} == {"indexer", "f=0.5", "f=0.9", "f=1.0"}
    assert {c.group for c in calls} == {16, 8}
    assert any(c.top_k > 32 for c in calls) and any(c.top_k == 16 for c in calls)
    assert any(c.holes for c in calls) and any(c.future for c in calls) and any(c.shuffle for c in calls)
    assert any(1 in c.q_lens for c in calls) and any(len(c.q_lens) > 1 for c in calls)
    assert any(s > q for c in calls for s, q in zip(c.seq_lens, c.q_lens, strict=True))
    assert any(c.q_in_qkv for c in calls) and not all(c.q_in_qkv for c in calls)


def test_perturb_keeps_the_contract():
    """Holes leave a valid id in every row, future picks lie wholly past the token and inside its request, and a
    shuffle keeps each row's set."""
    call = RandomCall(seq_lens=(900, 1500), q_lens=(300, 200), group=8, num_kv_heads=2, top_k=16, kind="f=0.9",
                      init_blocks=0, local_blocks=1, holes=0.5, future=True, shuffle=True, seed=3)
    case = make_case(list(call.seq_lens), list(call.q_lens), num_heads=16, num_kv_heads=2, head_dim=8)
    base = local_selection(case.query_start_loc, case.seq_lens, 2, 0.9, seed=3)
    sel = perturb(base, case, call).long()
    local, blocks = _token_blocks(case)
    assert bool((sel >= 0).any(-1).all())
    added = (sel > local[None, :, None]) & (sel >= 0)
    assert bool(added.any()), "no future block was drawn"
    assert bool((sel < blocks[None, :, None]).all())
    kept = torch.where(sel <= local[None, :, None], sel, -1).sort(-1).values
    subset = [(set(kept[h, t].tolist()) - {-1}) <= set(base[h, t].tolist()) for h in range(2) for t in range(500)]
    assert all(subset)


FUTURE_CALL = RandomCall(seq_lens=(300, 70), q_lens=(60, 70), group=8, num_kv_heads=1, top_k=8, kind="f=1.0",
                         init_blocks=0, local_blocks=1, holes=0.3, future=True, shuffle=True, seed=99)
"""Drawn calls rarely put a block boundary inside the CPU's short query runs: this one always has tokens (positions
240-255) that pick block 2, wholly in their future."""
PREFILL_CALLS = [draw_call(seed, GPU) for seed in PREFILL_SEEDS] + [FUTURE_CALL]


@pytest.mark.parametrize("call", PREFILL_CALLS, ids=lambda c: f"seed{c.seed}")
def test_random_prefill_calls(call, workspace):
    """Every path on one drawn call, each against the fp32 reference on every row; one workspace across seeds."""
    case = call_case(call)
    sel = call_selection(call, case)
    want = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel.cpu(), case.block_table.cpu(),
                            case.query_start_loc.cpu(), case.seq_lens.cpu())
    print(f"CUDA kernels ready: {cuda_paths_ready()}")  # pytest -s: which kernels "default" ran
    paths = BF16_PATHS if GPU else {k: BF16_PATHS[k] for k in ("default", "kv-outer only", "unfused merge")}
    for path, options in paths.items():
        got = sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,
                                      case.seq_lens, workspace=workspace, **options)
        assert_rows_close(path, call, got, want)


@pytest.mark.skipif(not GPU, reason="the fp8 cache paths are checked at bf16 on a GPU (the CPU test runs fp32)")
@pytest.mark.parametrize("call", PREFILL_CALLS, ids=lambda c: f"seed{c.seed}")
def test_random_prefill_calls_fp8_cache(call, workspace):
    """The fp8 cache's paths on the same draws, against the reference on the dequantised cache; the FP8 step where
    the CUDA library runs and the call fits it (16 or 8 heads per KV head, top_k <= 32), refused otherwise."""
    case = call_case(call)
    sel = call_selection(call, case)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    want = sparse_attention(case.q.cpu(), dequantize_kv_fp8(kv8, k_scale, v_scale).cpu(), sel.cpu(),
                            case.block_table.cpu(), case.query_start_loc.cpu(), case.seq_lens.cpu())
    for path, options in FP8_PATHS.items():
        args = (case.q, kv8, sel, case.block_table, case.query_start_loc, case.seq_lens)
        kwargs = {"k_scale": k_scale, "v_scale": v_scale, "workspace": workspace, **options}
        if options.get("fp8_step") and (not cuda_paths_ready() or call.top_k > 32):
            with pytest.raises(ValueError):
                sparse_attention_triton(*args, **kwargs)
            continue
        assert_rows_close(path, call, sparse_attention_triton(*args, **kwargs), want)


def request_alone(case: MSACase, sel: torch.Tensor, i: int) -> tuple:
    """Request ``i`` of the call as a call of its own: (q, selection, block_table, query_start_loc, seq_lens)."""
    start, end = (int(x) for x in case.query_start_loc[i:i + 2])
    qsl = torch.tensor([0, end - start], dtype=torch.int32, device=case.q.device)
    return (case.q[start:end], sel[:, start:end].contiguous(), case.block_table[i:i + 1], qsl,
            case.seq_lens[i:i + 1])


@pytest.mark.parametrize("call", PREFILL_CALLS, ids=lambda c: f"seed{c.seed}")
def test_random_prefill_calls_repeat_and_batch_invariance(call, workspace, row_exact_dot):
    """What a server that replays or re-batches a request expects: the same call twice gives the same bits, and a
    request's rows do not depend on the other requests of its batch (bit for bit: the tiles, unions and work lists
    are per request, and each output row is its own dot products and softmax). Every bf16 path, and the FP8 step
    where it runs."""
    case = call_case(call)
    sel = call_selection(call, case)
    batch = (case.q, sel, case.block_table, case.query_start_loc, case.seq_lens)
    for path, kv, options in prefill_paths(call, case):
        first = run_path(kv, options, workspace, *batch)
        again = run_path(kv, options, workspace, *batch)
        assert torch.equal(first, again), f"{path}: a repeated call differs in {call}"
        for i in range(len(call.q_lens) if len(call.q_lens) > 1 else 0):
            start, end = (int(x) for x in case.query_start_loc[i:i + 2])
            alone = run_path(kv, options, workspace, *request_alone(case, sel, i))
            diff = float((alone.float() - first[start:end].float()).abs().max())
            assert torch.equal(alone, first[start:end]), f"{path}: request {i} alone differs by {diff:.3g} in {call}"


def prefill_paths(call: RandomCall, case: MSACase) -> list[tuple[str, torch.Tensor, dict]]:
    """(path, cache, options) the invariance tests run: every bf16 path, and the FP8 step where it runs (GPU); the
    default on the CPU."""
    if not GPU:
        return [("default", case.kv_cache, {})]
    paths = [(p, case.kv_cache, o) for p, o in BF16_PATHS.items()]
    if cuda_paths_ready() and call.top_k <= 32:
        kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
        paths.append(("fp8 step", kv8, {"fp8_step": True, "k_scale": k_scale, "v_scale": v_scale}))
    return paths


def chunked(q: torch.Tensor, sel: torch.Tensor, block_table: torch.Tensor, seq_len: torch.Tensor,
            cut: int) -> list[tuple]:
    """One request's queries as two calls: tokens [0, cut) with the context before them, then the rest with
    everything before it as context (the KV cache already holds all the tokens, as a server's does by then)."""
    q_len = q.shape[0]
    parts = []
    for start, end in ((0, cut), (cut, q_len)):
        qsl = torch.tensor([0, end - start], dtype=torch.int32, device=q.device)
        parts.append((q[start:end], sel[:, start:end].contiguous(), block_table, qsl, seq_len - (q_len - end)))
    return parts


@pytest.mark.parametrize("call", PREFILL_CALLS, ids=lambda c: f"seed{c.seed}")
def test_random_prefill_calls_chunk_invariance(call, workspace, row_exact_dot):
    """A prompt prefilled in two chunks cut at a position that is a multiple of the tile size (a prefix-cache hit
    on whole KV-cache blocks, or a chunked prefill's chunk boundary) gets its whole prefill's rows bit for bit: tiles
    are cut at positions (v19b). The indexer's selections of the second chunk equal the whole prompt's too."""
    case = call_case(call)
    sel = call_selection(call, case)
    tile = tile_tokens(call.group)
    rng = random.Random(call.seed + 555)
    paths = prefill_paths(call, case)
    checked = 0
    for i, (seq_len, q_len) in enumerate(zip(call.seq_lens, call.q_lens, strict=True)):
        cuts = [c for c in range(1, q_len) if (seq_len - q_len + c) % tile == 0]
        if not cuts:
            continue
        cut = rng.choice(cuts)
        q, req_sel, table, qsl, lens = request_alone(case, sel, i)
        parts = chunked(q, req_sel, table, lens, cut)
        for path, kv, options in paths:
            whole = run_path(kv, options, workspace, q, req_sel, table, qsl, lens)
            pieces = [run_path(kv, options, workspace, *part) for part in parts]
            diff = float((torch.cat(pieces).float() - whole.float()).abs().max())
            assert torch.equal(torch.cat(pieces), whole), (
                f"{path}: request {i} cut at {cut} of {q_len} differs by {diff:.3g} in {call}")
        if call.kind == "indexer":
            start = int(case.query_start_loc[i])
            index_q = case.index_q[start:start + q_len]
            tail_qsl, tail_lens = parts[1][3:]
            pick = functools.partial(msa_index_topk_triton, index_k_cache=case.index_k_cache, block_table=table,
                                     top_k=call.top_k, init_blocks=call.init_blocks, local_blocks=call.local_blocks)
            whole_pick = pick(index_q, query_start_loc=qsl, seq_lens=lens)
            tail_pick = pick(index_q[cut:], query_start_loc=tail_qsl, seq_lens=tail_lens)
            assert torch.equal(tail_pick, whole_pick[:, cut:]), f"indexer: request {i} cut at {cut} in {call}"
        checked += 1
    print(f"chunked requests checked: {checked} of {len(call.q_lens)} in {call}")  # pytest -s


def run_path(kv: torch.Tensor, options: dict, workspace: PrefillWorkspace, q: torch.Tensor, sel: torch.Tensor,
             block_table: torch.Tensor, query_start_loc: torch.Tensor, seq_lens: torch.Tensor) -> torch.Tensor:
    return sparse_attention_triton(q, kv, sel, block_table, query_start_loc, seq_lens, workspace=workspace, **options)


@dataclass(frozen=True)
class RandomDecode:
    seq_lens: tuple[int, ...]
    query_len: int
    """1, or 2 (one MTP draft token): each request's last ``query_len`` positions are its queries."""
    group: int
    num_kv_heads: int
    top_k: int
    shuffle: bool
    seed: int
    q_in_qkv: bool = False


def draw_decode(seed: int, gpu: bool) -> RandomDecode:
    rng = random.Random(1000 + seed)
    max_len = 9000 if gpu else 900
    lens = tuple(rng.choice([rng.randint(2, BLOCK_SIZE), rng.randint(2, max_len)]) for _ in range(rng.randint(1, 6)))
    return RandomDecode(seq_lens=lens, query_len=rng.choice([1, 2]), group=rng.choice([16, 8]),
                        num_kv_heads=rng.choice([1, 2, 4] if gpu else [1, 2]), top_k=rng.choice([16, 8, 32]),
                        shuffle=rng.random() < 0.5, seed=seed, q_in_qkv=_later_draw(1000 + seed))


@pytest.mark.parametrize("seed", DECODE_SEEDS)
def test_random_decode_calls(seed):
    """Decode batches of mixed lengths (a request shorter than one block included), 1 or 2 queries per request,
    on the bf16 cache and (GPU) the fp8 cache, every row against the reference."""
    call = draw_decode(seed, GPU)
    case = make_case(list(call.seq_lens), [call.query_len] * len(call.seq_lens),
                     num_heads=call.group * call.num_kv_heads, num_kv_heads=call.num_kv_heads, head_dim=HEAD_DIM,
                     dtype=DTYPE, device=DEVICE, seed=seed)
    if call.q_in_qkv:
        case = dataclasses.replace(case, q=in_qkv(case.q, call.num_kv_heads))
    sel = local_selection(case.query_start_loc, case.seq_lens, call.num_kv_heads, 0.5, top_k=call.top_k, seed=seed)
    if call.shuffle:
        sel = shuffled_slots(sel, seed).to(DEVICE)
    caches = [("decode", case.kv_cache, 1.0, 1.0, case.kv_cache)]
    if GPU:
        kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
        caches.append(("decode fp8", kv8, k_scale, v_scale, dequantize_kv_fp8(kv8, k_scale, v_scale)))
    for path, kv, k_scale, v_scale, ref_kv in caches:
        want = sparse_attention(case.q.cpu(), ref_kv.cpu(), sel.cpu(), case.block_table.cpu(),
                                case.query_start_loc.cpu(), case.seq_lens.cpu())
        got = sparse_decode_triton(case.q, kv, sel, case.block_table, case.seq_lens,
                                   decode_query_len=call.query_len, k_scale=k_scale, v_scale=v_scale)
        assert_rows_close(path, call, got, want)
