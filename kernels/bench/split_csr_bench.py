"""The split + CSR kernels of the adaptive prefill (v13s) against their v12 versions, in one run on one GPU.

Run (on the GPU machine, from the repo root; the CUDA library built ahead, ``python -m kernels.msa.cuda build``,
else the whole-prefill rows run the Triton fallbacks):
    python -m kernels.bench.split_csr_bench --json $OUT/split_v13s.json
Per selection (N tokens: the indexer's on random inputs, f = 0.9, f = 1.0; and a chunked batch with context, slots
shuffled and -1 holes): first the checks — every ``TileSplit`` field of the new split equal to the legacy one
(``split_csr_legacy``: union and pages up to each tile's union size, the work list as a set), the CSR's offsets and
work items equal and each segment's entries equal as a set (their order inside a segment is the order of the
atomics in both versions, and no consumer depends on it), the default prefill's output bit-identical with the
legacy split + CSR swapped in, and the new split + CSR replayed from a CUDA graph equal to the eager run — then
``--repeat`` interleaved rounds of: split alone, CSR alone, split + CSR, the whole default prefill, old and new.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from kernels.bench import split_csr_legacy as legacy
from kernels.bench.msa_bench import (
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    PrintedRows,
    Row,
    bench_ms,
    guarded,
    print_table,
    timed_attention,
)


def compare_splits(old, new) -> list[str]:
    """Names of the ``TileSplit`` fields that differ (unwritten union entries and token masks, and the work list's
    order ignored; ``seg_pos`` is checked through the CSR it builds). v19b's split sizes up to two more (empty) tiles
    per request and cuts at the tokens' positions: the cases here put every request boundary and every context
    length on a tile edge, so its first tiles are the old ones."""
    bad = []
    size = old.union_size
    tiles, new_tiles = size.shape[1], new.union_size.shape[1]
    spare_listed = bool((new.union_size[:, tiles:] <= new.union.shape[2]).any())
    if not torch.equal(size, new.union_size[:, :tiles]) or spare_listed:
        return ["union_size"]
    k = int(new.num_work)
    work = new.work[:k].long()
    new = new._replace(union=new.union[:, :tiles], pages=new.pages[:, :tiles],
                       tokmask=new.tokmask[:, :old.tokmask.shape[1]],
                       work=(work // new_tiles * tiles + work % new_tiles).to(torch.int32))
    listed = torch.where(size <= old.union.shape[2], size, 0)[..., None]
    used = torch.arange(old.union.shape[2], device=size.device) < listed
    for name in ("union", "pages"):
        if not torch.equal(torch.where(used, getattr(old, name), 0), torch.where(used, getattr(new, name), 0)):
            bad.append(name)
    written = (size <= old.union.shape[2]).repeat_interleave(old.tokmask.shape[1] // size.shape[1], 1)
    if not torch.equal(torch.where(written, old.tokmask, 0), torch.where(written, new.tokmask, 0)):
        bad.append("tokmask")  # (written for the tiles that went tile-outer only)
    for name in ("clean", "rest", "merge_sel", "carrier", "direct", "owned", "num_work", "seg_count"):
        a, b = seg_totals(old, name), seg_totals(new, name)
        if a is None or b is None:
            if (a is None) != (b is None):
                bad.append(name)
        elif not torch.equal(a, b):
            bad.append(name)
    k = int(old.num_work)
    if not torch.equal(old.work[:k].sort().values, new.work[:k].sort().values):
        bad.append("work")
    return bad


def seg_totals(split, name: str) -> torch.Tensor | None:  # noqa: ANN001 - a TileSplit of either version
    """Field ``name``; for ``seg_count`` the per-segment totals over the v14u lanes (the v12 split has one)."""
    field = getattr(split, name)
    if name != "seg_count" or field is None:
        return field
    return field.view(getattr(split, "csr_lanes", 1), -1).sum(0, dtype=torch.int32)


def segment_sorted(perm: torch.Tensor, row_ptr: torch.Tensor) -> torch.Tensor:
    """The CSR's entries with each segment's entries in ascending order."""
    kept = int(row_ptr[-1])
    seg = torch.searchsorted(row_ptr, torch.arange(kept, device=perm.device), right=True) - 1
    return perm[:kept].long()[torch.argsort(seg * (perm.numel() + 1) + perm[:kept].long())]


def compare_csrs(old, new) -> list[str]:
    """What differs between two CSRs (perm, row_ptr, work_seg, work_chunk, num_segs): entries compared per segment."""
    bad = [name for name, a, b in zip(("row_ptr", "work_seg", "work_chunk"), old[1:4], new[1:4], strict=True)
           if a.dtype != b.dtype or not torch.equal(a, b)]
    if old[4] != new[4]:
        bad.append("num_segs")
    if not bad and not torch.equal(segment_sorted(old[0], old[1]), segment_sorted(new[0], new[1])):
        bad.append("perm")
    return bad


@contextlib.contextmanager
def legacy_split(version: str = "old"):
    """``sparse_attention_triton`` with the v12 split + CSR ("old"), or v13s's one counter per segment ("v13s"):
    the names it calls at run time swapped; "new" changes nothing."""
    from kernels.msa import prefill, tile_outer

    def old_split(*args: Any, workspace: Any = None, **kwargs: Any) -> Any:  # (v12 took no workspace)
        return legacy.tile_unions(*args, **kwargs)

    def old_csr(*args: Any, **kwargs: Any) -> Any:  # drops workspace=
        return legacy.csr_from_split(*args)

    def one_lane(*args: Any, **kwargs: Any) -> Any:
        return tile_outer.tile_unions(*args, **{**kwargs, "csr_lanes": 1})

    saved = prefill.tile_unions, prefill.csr_from_split
    if version == "old":
        prefill.tile_unions, prefill.csr_from_split = old_split, old_csr
    elif version == "v13s":
        prefill.tile_unions = one_lane
    try:
        yield
    finally:
        prefill.tile_unions, prefill.csr_from_split = saved


def graph_equal(split_csr, eager) -> bool:
    """Capture the new split + CSR in a CUDA graph, replay it, compare with the eager result (no host sync inside)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        split_csr()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = split_csr()
    graph.replay()
    torch.cuda.synchronize()
    return not compare_splits(eager[0], got[0]) and not compare_csrs(eager[1], got[1])


def bench_case(case, sel: torch.Tensor, label: str, rows: list[Row], repeat: int) -> None:
    """Checks, then ``repeat`` interleaved timing rounds of every stage, old and new."""
    from kernels.msa import prefill, tile_outer
    from kernels.msa.merge import device_positions, device_requests

    n, nb = sel.shape[1], case.block_table.shape[1]
    req = device_requests(case.query_start_loc, n)
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    splits = {"old": lambda: legacy.tile_unions(sel, req, pos, case.block_table, csr_blocks=nb),
              "v13s": lambda: tile_outer.tile_unions(sel, req, pos, case.block_table, csr_blocks=nb, csr_lanes=1),
              "new": lambda: tile_outer.tile_unions(sel, req, pos, case.block_table, csr_blocks=nb)}
    csr_fns = {"old": legacy.csr_from_split, "v13s": prefill.csr_from_split, "new": prefill.csr_from_split}
    split = {v: f() for v, f in splits.items()}
    csr = {v: csr_fns[v](split[v], req, nb, 128) for v in splits}
    bad = [f"{v}: {b}" for v in ("v13s", "new")
           for b in compare_splits(split["old"], split[v]) + compare_csrs(csr["old"], csr[v])]
    graph_ok = graph_equal(lambda: (lambda s: (s, prefill.csr_from_split(s, req, nb, 128)))(splits["new"]()),
                           (split["new"], csr["new"]))
    prefill_fns, outs = {}, {}
    for v in splits:
        with legacy_split(v):
            prefill_fns[v], outs[v] = timed_attention(case, sel)
    same_out = torch.equal(outs["old"], outs["new"]) and torch.equal(outs["v13s"], outs["new"])
    kept = float((split["new"].rest >= 0).sum()) / max(1.0, float((sel >= 0).sum()))
    rows.append(Row("check", label, "new vs legacy", float("nan"),
                    note=f"split+CSR fields differing: {bad or 'none'}; prefill output bit-identical: {same_out}; "
                         f"CUDA graph replay equal: {graph_ok}; KV-outer entries {kept:.0%}"))
    stages: dict[str, dict[str, Any]] = {
        "split (tile_unions, csr_blocks)": {v: splits[v] for v in splits},
        "CSR from the split (csr_from_split)": {v: (lambda v=v: csr_fns[v](split[v], req, nb, 128)) for v in splits},
        "split + CSR": {v: (lambda v=v: csr_fns[v](splits[v](), req, nb, 128)) for v in splits},
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(repeat):
        for stage, fns in stages.items():
            for v, f in fns.items():
                times.setdefault((stage, v), []).append(bench_ms(f, rep_ms=100))
        for v in splits:
            with legacy_split(v):
                times.setdefault(("default prefill", v), []).append(bench_ms(prefill_fns[v]))
    for stage in (*stages, "default prefill"):
        old, v13s, new = times[stage, "old"], times[stage, "v13s"], times[stage, "new"]
        rows.append(Row("v13s", label, f"{stage}: old (v12)", min(old), note=" / ".join(f"{t:.3f}" for t in old)))
        rows.append(Row("v13s", label, f"{stage}: v13s (1 counter per segment)", min(v13s),
                        note=f"{' / '.join(f'{t:.3f}' for t in v13s)}; {min(old) / min(v13s):.2f}x old"))
        rows.append(Row("v13s", label, f"{stage}: new (v14u lanes)", min(new),
                        note=f"{' / '.join(f'{t:.3f}' for t in new)}; {min(v13s) / min(new):.2f}x v13s (best of "
                             f"{repeat}), {sum(v13s) / sum(new):.2f}x (mean); {min(old) / min(new):.2f}x old"))


def shuffled_with_holes(sel: torch.Tensor, seed: int) -> torch.Tensor:
    """Each row's slots in a random order, and ~3 % of the entries set to -1 (holes anywhere)."""
    gen = torch.Generator(device=sel.device).manual_seed(seed)
    order = torch.rand(sel.shape, generator=gen, device=sel.device).argsort(-1)
    out = sel.gather(-1, order)
    return torch.where(torch.rand(sel.shape, generator=gen, device=sel.device) < 0.03, -1, out).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072, help="prefill length of the selection rows")
    parser.add_argument("--kinds", default="indexer sel,f=0.9,f=1.0,chunked")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import triton

    from kernels.msa import cuda
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection, make_case

    rows = PrintedRows()
    if args.json:
        rows.jsonl = args.json.with_suffix(".jsonl")
    n = args.n
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    po = torch.empty(KV_HEADS, 8, 16, HEADS // KV_HEADS, HEAD_DIM, dtype=torch.bfloat16, device="cuda")
    steps = f"tile step: {cuda.choose(case.q, case.kv_cache, po, 8) or 'CUDA'}"
    for kind in args.kinds.split(","):
        label = f"N={n // 1024}K {kind}"
        if kind == "chunked":  # 2 requests: 8K queries after 120K of context, 4K after 36K; slots shuffled, holes
            case = make_case([131072, 40000], [8192, 4096], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=7)
            sel = shuffled_with_holes(local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, 0.9, seed=8), 9)
            label = "chunked 8K@128K + 4K@40K f=0.9 shuffled"
        elif kind == "indexer sel":
            sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                        case.seq_lens, max_query_len=n)
        else:
            f = float(kind.removeprefix("f="))
            sel = local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, f, seed=n + int(f * 10))
        guarded(rows, "v13s", label, bench_case, case, sel, label, rows, args.repeat)
        torch.cuda.empty_cache()
    header = (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | {steps} | "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=1))
    print_table(rows, header)


if __name__ == "__main__":
    main()
