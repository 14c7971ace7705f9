"""Locality-adaptive prefill (tile-outer where a tile's union of blocks is small, KV-outer elsewhere) against the
fp32 reference: on CPU under TRITON_INTERPRET=1 (small shapes, fp32), on a GPU when one is present (bf16).

Covers tiles on both sides of the union threshold in one call, requests whose last tile is short (tiles are cut
per request), selection slots in any order with -1 holes, padding tokens past the last full tile, and chunked
prefill with context."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa import msa_index_topk, sparse_attention, tile_outer  # noqa: E402
from kernels.msa.inputs import local_selection, make_case  # noqa: E402
from kernels.msa.merge import device_positions, device_requests  # noqa: E402
from kernels.msa.prefill import sparse_attention_triton  # noqa: E402
from kernels.msa.tile_outer import tile_unions  # noqa: E402
from tests.kernels.msa.checks import DEVICE, DTYPE, GPU, HEAD_DIM, TOL, rel_err, shuffled_slots  # noqa: E402

TILE = 8 if GPU else 2  # tokens per tile-outer tile: x 8 query heads per KV head = 16 MMA rows on the CPU


def _request_tiles(qsl: list[int], tile: int, first_pos: list[int] | None = None) -> list[range]:
    """The tokens of each tile: runs of one request's tokens cut where a token's position is a multiple of ``tile``
    (``first_pos``: each request's first position, its context length; a request's first and last runs may be
    short)."""
    first_pos = first_pos or [0] * (len(qsl) - 1)
    tiles = []
    for start, end, p0 in zip(qsl[:-1], qsl[1:], first_pos, strict=True):
        cuts = [start] + [t for t in range(start + 1, end) if (p0 + t - start) % tile == 0] + [end]
        tiles += [range(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
    return tiles


def _expected_unions(sel: torch.Tensor, tiles: list[range]):
    """Per (head, tile): (set of blocks, each token's set, the tile's tokens)."""
    out = {}
    for h in range(sel.shape[0]):
        for i, rows in enumerate(tiles):
            sets = [set(sel[h, t].tolist()) - {-1} for t in rows]
            out[h, i] = (set().union(*sets), sets, rows)
    return out


def test_request_tiles_cut_each_request():
    """Tiles are runs of one request's tokens cut at the multiples of the tile size of their positions (a request's
    first and last ones short, empty requests none), then empty tiles up to the bound the host sizes the buffers
    for; with the caller's query_start_loc or found from the request ids."""
    gen = torch.Generator().manual_seed(4)
    for trial in range(30):
        num_requests = int(torch.randint(1, 40, (1,), generator=gen))
        lens = [int(x) for x in torch.randint(0, 3000 if trial % 3 else 12, (num_requests,), generator=gen)]
        context = [int(x) for x in torch.randint(0, 40, (num_requests,), generator=gen)] if trial % 2 else None
        tile = (2, 4, 8, 16)[trial % 4]
        qsl = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32)
        seq_lens = torch.tensor(lens) + torch.tensor(context or [0] * num_requests)
        n = int(qsl[-1])
        tiles = _request_tiles(qsl.tolist(), tile, context)
        bound = tile_outer.request_tile_count(n, num_requests, tile)
        assert len(tiles) <= bound
        want = [r.start for r in tiles] + [n] * (bound + 1 - len(tiles))
        req = device_requests(qsl, n).to(DEVICE)
        pos = device_positions(qsl, seq_lens.to(torch.int32), n).to(DEVICE)
        for given in (qsl.to(DEVICE), None):
            assert tile_outer.request_tiles(req, pos, num_requests, tile, query_start_loc=given).tolist() == want


def test_requests_straddling_a_tile_edge_fit_the_bound():
    """Two-token requests that each straddle a tile boundary of positions take two tiles each, inside the bound."""
    tile, num_requests = 8, 5
    qsl = torch.arange(0, 2 * num_requests + 1, 2, dtype=torch.int32)
    seq_lens = torch.full((num_requests,), tile + 1, dtype=torch.int32)  # tokens at positions 7 and 8
    req, pos = device_requests(qsl, 2 * num_requests), device_positions(qsl, seq_lens, 2 * num_requests)
    first = tile_outer.request_tiles(req.to(DEVICE), pos.to(DEVICE), num_requests, tile).tolist()
    assert first[:2 * num_requests] == list(range(2 * num_requests))
    assert len(first) - 1 == tile_outer.request_tile_count(2 * num_requests, num_requests, tile) == 11


@pytest.mark.parametrize("all_pairs", [False, True])
@pytest.mark.parametrize("min_share", [1, 2])
def test_tile_unions_match_sets(min_share, all_pairs, monkeypatch):
    """Union, token masks and the split of every entry between the two paths, against Python sets; with the tile's
    matches found token by token (the GPU's form) and all pairs at once (the interpreter's), on either device."""
    monkeypatch.setattr(tile_outer, "compare_all_pairs", lambda device: all_pairs)
    seq_lens, q_lens = [2300, 700], [37, 300]  # request 0 starts at position 2263: its first tile is one token
    qsl = torch.tensor([0, 37, 337], dtype=torch.int32)
    sel = shuffled_slots(local_selection(qsl, torch.tensor(seq_lens, dtype=torch.int32), 2, 0.7, window=8, seed=1), 2)
    req = device_requests(qsl, sel.shape[1])
    max_union = 16  # request 0 sees 18 blocks: its tiles fall on both sides (request 1 sees 6)
    table = torch.randperm(2 * 24).view(2, 24).to(torch.int32)  # request -> block -> page
    pos = device_positions(qsl, torch.tensor(seq_lens, dtype=torch.int32), sel.shape[1])
    split = tile_unions(sel.to(DEVICE), req.to(DEVICE), pos.to(DEVICE), table.to(DEVICE), 4, max_union, min_share,
                        min_shared_pct=0)
    union, pages, count, clean, tokmask, rest, msel, carrier, direct, owned, work, num_work = (x.cpu() for x in split[:12])
    small = large = listed = 0
    tiles = _request_tiles(qsl.tolist(), 4, [s - q for s, q in zip(seq_lens, q_lens, strict=True)])
    assert split.tile_first.tolist() == [r.start for r in tiles] + [sel.shape[1]] * (count.shape[1] + 1 - len(tiles))
    assert bool((count[:, len(tiles):] > max_union).all())  # the bound's spare tiles: empty, never in the work list
    for (h, i), (blocks, token_sets, rows) in _expected_unions(sel, tiles).items():
        blocks = {b for b in blocks if sum(b in ts for ts in token_sets) >= min_share}
        if len(blocks) > max_union:
            assert int(count[h, i]) > max_union, (h, i)
            assert int(clean[h, i]) == 0, (h, i)  # v13s: written by the kernel (no memset)
            large += 1
            blocks = set()
        else:
            small += 1
            assert int(count[h, i]) == len(blocks)
            got = union[h, i, :len(blocks)].tolist()
            assert set(got) == blocks
            assert pages[h, i, :len(blocks)].tolist() == [int(table[req[rows[0]], b]) for b in got]
            # clean blocks (chosen by every token, wholly before the tile's first token) come first
            want_clean = {b for b in blocks if all(b in ts for ts in token_sets) and (b + 1) * 128 <= pos[rows[0]] + 1}
            assert set(got[:int(clean[h, i])]) == want_clean, (h, i)
            listed += bool(blocks)
            for k, want in enumerate(token_sets):
                bits = int(tokmask[h, i * 4 + k])
                assert {got[j] for j in range(len(got)) if bits >> j & 1} == want & blocks
        for t in rows:  # every entry goes exactly one way; the carrier slot marks the tile-outer part
            entries = sel[h, t].tolist()
            assert rest[h, t].tolist() == [b if b not in blocks else -1 for b in entries]
            shared_slots = [k for k, b in enumerate(entries) if b in blocks]
            assert int(carrier[h, t]) == (shared_slots[0] if shared_slots else -1)
            assert bool(direct[h, t]) == (bool(shared_slots) and all(b in blocks for b in entries if b >= 0))
            assert bool(owned[h, t]) == bool(blocks)  # the row's tile is in the work list (fused merge writes it)
            want_msel = [b if (b >= 0 and b not in blocks) or k == int(carrier[h, t]) else -1
                         for k, b in enumerate(entries)]
            assert msel[h, t].tolist() == want_msel
    assert small and large, "the case must put tiles on both sides of the threshold"
    assert int(clean.sum()) > 0, "the case must have clean blocks"
    # the work list holds exactly the tiles with tile-outer work, once each
    listed_tiles = sorted(work[:int(num_work)].tolist())
    assert listed_tiles == sorted(h * count.shape[1] + i for h in range(count.shape[0]) for i in range(count.shape[1])
                           if 0 < int(count[h, i]) <= max_union)
    assert len(listed_tiles) == listed


@pytest.mark.parametrize("seq_lens,q_lens,shared,max_union,min_share,keys,per_sm,fuse", [
    ([2400, 300], [41, 300], 0.8, 18, 1, 128, 2, True),  # chunked prefill, 2359 tokens of context; whole tiles both ways
    ([2400, 300], [41, 300], 0.8, 32, 2, 64, 0, True),  # shared blocks tile-outer (64-key pieces, a program per tile)
    ([2400, 300], [41, 300], 0.8, 32, 2, 64, 0, False),  # the same with v8's separate merge (carrier parts)
    ([2600], [150], 1.0, 63, 1, 128, 2, True),  # all tiles tile-outer (the padding tile too), no merge
    ([2100, 77], [33, 77], 0.0, 0, 1, 128, 2, True),  # KV-outer only (the v6 kernel)
])
def test_adaptive_prefill_matches_reference(seq_lens, q_lens, shared, max_union, min_share, keys, per_sm, fuse):
    case = make_case(seq_lens, q_lens, num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE,
                     seed=21)
    sel = shuffled_slots(local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, shared, window=8, seed=5), 6)
    if max_union:
        n = sel.shape[1]
        split = tile_unions(sel.to(DEVICE), device_requests(case.query_start_loc, n),
                            device_positions(case.query_start_loc, case.seq_lens, n), case.block_table,
                            TILE, max_union, min_share, min_shared_pct=0)
        on_tile_outer = float((split.union_size <= max_union).float().mean())
        direct = float(split.direct.float().mean())
        assert on_tile_outer > 0 and (max_union == 63 or direct < 1), (on_tile_outer, direct)
        assert int(split.clean.sum()) > 0 and int(split.num_work) > 3  # the unmasked loop and the strided walk run
    out = torch.full_like(case.q, float("nan"))  # poisoned: every element must be written by one of the paths
    sparse_attention_triton(case.q, case.kv_cache, sel.to(DEVICE), case.block_table, case.query_start_loc,
                            case.seq_lens, out=out, max_union=max_union, union_tile=TILE, min_share=min_share,
                            tile_keys=keys, min_shared_pct=0, tile_per_sm=per_sm, fuse_merge=fuse)
    want = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel, case.block_table.cpu(),
                            case.query_start_loc.cpu(), case.seq_lens.cpu())
    assert rel_err(out, want) < TOL


def test_default_is_adaptive_and_matches_reference():
    """The default knobs (adaptive, gate on): tokens with locality then tokens without, so tiles go both ways (one
    tile mixes the two); the output matches the reference."""
    case = make_case([40000], [200], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE,
                     seed=23)
    local = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.9, window=64, seed=7)
    scattered = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.0, window=64, seed=8)
    sel = torch.cat([local[:, :100], scattered[:, 100:]], dim=1).contiguous()
    split = tile_unions(sel.to(DEVICE), device_requests(case.query_start_loc, 200),
                        device_positions(case.query_start_loc, case.seq_lens, 200), case.block_table)
    assert 0 < int(split.num_work) < split.union_size.numel(), "some tiles tile-outer, some KV-outer"
    out = sparse_attention_triton(case.q, case.kv_cache, sel.to(DEVICE), case.block_table, case.query_start_loc,
                                  case.seq_lens)
    want = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel, case.block_table.cpu(),
                            case.query_start_loc.cpu(), case.seq_lens.cpu())
    assert rel_err(out, want) < TOL


def test_gate_sends_unshared_tiles_to_kv_outer():
    """With random selections only the local block is shared: the 75% gate leaves those tiles to KV-outer whole."""
    qsl = torch.tensor([0, 64], dtype=torch.int32)
    sel = local_selection(qsl, torch.tensor([40000], dtype=torch.int32), 2, 0.0, window=8, seed=4)
    table = torch.arange(313, dtype=torch.int32)[None]
    req, pos = device_requests(qsl, 64).to(DEVICE), device_positions(qsl, torch.tensor([40000]), 64).to(DEVICE)
    split = tile_unions(sel.to(DEVICE), req, pos, table.to(DEVICE), 4, 32, 2)
    assert bool((split.union_size.cpu() > 32).all())
    assert torch.equal(split.rest.cpu(), sel) and torch.equal(split.merge_sel.cpu(), sel)
    assert not bool(split.direct.any()) and int(split.num_work) == 0  # no tile-outer work at all
    ungated = tile_unions(sel.to(DEVICE), req, pos, table.to(DEVICE), 4, 32, 2, 0)
    tiles = 64 // 4  # the context (39936) is on a tile edge; the bound's spare tile after them is empty
    assert bool((ungated.union_size.cpu()[:, :tiles] <= 32).all())  # the local block alone is shared
    assert bool((ungated.union_size.cpu()[:, tiles:] > 32).all())
    assert bool((ungated.clean.cpu()[:, :tiles] == 0).all())  # ... and it is causal-masked: not clean
    assert int(ungated.num_work) == ungated.union_size.shape[0] * tiles


def test_indexer_selection_both_paths_agree():
    """The indexer's own selections (early tokens select every block: small unions) give the same output
    through the adaptive kernel as through KV-outer alone."""
    case = make_case([2500], [96], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE,
                     seed=22)
    sel = msa_index_topk(case.index_q.cpu(), case.index_k_cache.cpu(), case.block_table.cpu(),
                         case.query_start_loc.cpu(), case.seq_lens.cpu()).to(DEVICE)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    adaptive = sparse_attention_triton(*args, max_union=63, union_tile=TILE, min_share=2)
    kv_outer = sparse_attention_triton(*args, max_union=0)
    assert rel_err(adaptive, kv_outer.float()) < TOL


def test_local_selection_contract():
    """Synthetic selections: local block in slot 0, distinct ids, valid prefix, only visible full blocks."""
    qsl = torch.tensor([0, 500], dtype=torch.int32)
    lens = torch.tensor([4000], dtype=torch.int32)
    sel = local_selection(qsl, lens, 2, 0.9, seed=3)
    pos = torch.arange(3500, 4000)
    assert torch.equal(sel[:, :, 0].long(), (pos // 128).expand(2, -1))
    others = sel[:, :, 1:].long()
    assert bool((others >= 0).all()) and bool((others < (pos // 128)[None, :, None]).all())
    srt = sel.sort(-1).values
    assert bool((srt[..., 1:] != srt[..., :-1]).all())
    # f = 0.9 over 64-token windows: a window's tokens share most of their blocks
    per_window = [len(set(sel[0, w:w + 64].flatten().tolist())) for w in range(0, 448, 64)]
    assert max(per_window) < 16 + 64 * 15 * 0.3


PARTIAL_TOL = 2e-2
"""Bound on the output's relative error with int8 partial outputs (per-row scale): the GPU tests' bf16 tolerance
(NOTES.md v9 / v10t have the measured values). A wrong scale or a lost part would be off by O(1)."""


@pytest.mark.parametrize("max_union,fuse", [(0, True), (63, True), (63, False)])  # KV-outer only; fused; v8 merge
def test_int8_partials(max_union, fuse):
    case = make_case([2400, 300], [41, 300], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=24)
    sel = shuffled_slots(local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.5, window=8, seed=9), 10)
    out = torch.full_like(case.q, float("nan"))
    sparse_attention_triton(case.q, case.kv_cache, sel.to(DEVICE), case.block_table, case.query_start_loc,
                            case.seq_lens, out=out, max_union=max_union, union_tile=TILE, min_share=2,
                            min_shared_pct=0, partial_dtype=torch.int8, fuse_merge=fuse)
    want = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel, case.block_table.cpu(),
                            case.query_start_loc.cpu(), case.seq_lens.cpu())
    err = rel_err(out, want)
    print(f"int8 partials, max_union={max_union}, fuse={fuse}: rel err {err:.2e}")
    assert err < PARTIAL_TOL


@pytest.mark.parametrize("shared,fuse,per_sm", [(0.9, False, 2), (0.5, False, 0), (0.9, True, 0)])
def test_int8_partials_with_bf16_carrier_parts(shared, fuse, per_sm):
    """v12m: with int8 partials the unfused tile-outer step writes its carrier parts to a side buffer in q's dtype
    (bf16 on a GPU); the merge reads the int8 KV-outer parts (``rest``'s slots) and that part. Chunked prefill with
    context, a request's short last tile, slots in any order, -1 holes; against the reference and the bf16 path."""
    case = make_case([5000, 3000], [41, 160], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=26)  # contexts longer than 16 blocks: the tokens' selections differ
    sel = shuffled_slots(local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, shared, window=8, seed=13), 14)
    sel[0, 7, 2] = sel[1, 30, 0] = sel[1, 150, 5] = -1  # holes in the middle of rows
    args = (case.q, case.kv_cache, sel.to(DEVICE), case.block_table, case.query_start_loc, case.seq_lens)
    knobs = {"union_tile": TILE, "min_share": 2, "min_shared_pct": 0, "tile_per_sm": per_sm, "fuse_merge": fuse}
    n = sel.shape[1]
    split = tile_unions(sel.to(DEVICE), device_requests(case.query_start_loc, n),
                        device_positions(case.query_start_loc, case.seq_lens, n), case.block_table, TILE, 32, 2,
                        min_shared_pct=0)
    carriers = float(((split.carrier >= 0) & ~split.direct).float().mean())
    assert carriers > 0.02 and float((split.rest >= 0).float().mean()) > 0.02, "carrier parts and KV-outer parts"
    want = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel, case.block_table.cpu(),
                            case.query_start_loc.cpu(), case.seq_lens.cpu())
    plain = sparse_attention_triton(*args, **knobs)
    out = torch.full_like(case.q, float("nan"))
    sparse_attention_triton(*args, out=out, partial_dtype=torch.int8, **knobs)
    err, diff = rel_err(out, want), rel_err(out, plain)
    print(f"int8 + side buffer, f={shared}, fuse={fuse}: ref err {err:.2e}, vs unquantised partials {diff:.2e}")
    assert err < PARTIAL_TOL and diff < PARTIAL_TOL


def test_tile_outer_side_buffer_holds_the_carrier_parts():
    """The tile-outer kernel with ``carrier_parts`` writes each carrier part (and its log2-sum-exp) to the row's
    side-buffer entry, bit for bit what it writes into the partials' carrier slot without it, the same direct rows,
    and nothing into the (int8) partials or their scales."""
    from kernels.msa.merge import CarrierParts
    from kernels.msa.tile_outer import tile_outer_attention

    case = make_case([2400, 300], [41, 300], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=27)
    sel = shuffled_slots(local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.8, window=8, seed=15), 16)
    n, group = sel.shape[1], 8
    req = device_requests(case.query_start_loc, n)
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    split = tile_unions(sel.to(DEVICE), req, pos, case.block_table, TILE, 32, 2, min_shared_pct=0)
    common = (case.q, case.kv_cache, case.seq_lens, pos, req, split, HEAD_DIM ** -0.5)

    def nans(shape, dtype=torch.float32):
        return torch.full(shape, float("nan"), dtype=dtype, device=DEVICE)

    out_a, po_a, lse_a = nans(case.q.shape, DTYPE), nans((2, n, 16, group, HEAD_DIM), DTYPE), nans((2, n, 16, group))
    tile_outer_attention(*common, out_a, po_a, lse_a, TILE, per_sm=2)
    out_b, lse_b, scale_b = nans(case.q.shape, DTYPE), nans((2, n, 16, group)), nans((2, n, 16, group))
    po_b = torch.full((2, n, 16, group, HEAD_DIM), 7, dtype=torch.int8, device=DEVICE)
    side = CarrierParts.empty(split.carrier, group, HEAD_DIM, DTYPE)
    side.o.fill_(float("nan"))
    side.lse.fill_(float("nan"))
    tile_outer_attention(*common, out_b, po_b, lse_b, TILE, per_sm=2, partial_scale=scale_b, carrier_parts=side)
    carrier, direct = split.carrier.cpu().long(), split.direct.cpu()
    h, t = ((carrier >= 0) & ~direct).nonzero(as_tuple=True)
    assert h.numel() > 0, "the case must have carrier parts"
    k = carrier[h, t]
    assert torch.equal(side.o.cpu()[h, t], po_a.cpu()[h, t, k]) and torch.equal(side.lse.cpu()[h, t], lse_a.cpu()[h, t, k])
    assert torch.equal(out_a.isnan(), out_b.isnan()) and torch.equal(out_a[~out_a.isnan()], out_b[~out_b.isnan()])
    assert bool((po_b == 7).all()) and bool(lse_b.isnan().all()) and bool(scale_b.isnan().all())
    assert int((~side.lse.isnan()).sum()) == h.numel() * group  # only carrier rows' entries were written


def test_fp8_partials_refused():
    """fp8 e4m3 partials were removed (v10t: over the tolerance at M3 shapes): asking for them is a clear error."""
    case = make_case([300], [300], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE, seed=2)
    sel = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.5, window=8, seed=3).to(DEVICE)
    with pytest.raises(ValueError, match="partial_dtype"):
        sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens,
                                partial_dtype=torch.float8_e4m3fn)


def _segment_sorted(perm: torch.Tensor, row_ptr: torch.Tensor) -> torch.Tensor:
    """``perm`` with each segment's entries in ascending order (the split kernel lists them in atomic order)."""
    pos = torch.arange(perm.numel())
    seg = torch.searchsorted(row_ptr.cpu(), pos, right=True) - 1
    span = int(perm.max()) + 1 if perm.numel() else 1  # entry ids go past perm's length (a prefix of the entries)
    return perm.cpu().long()[torch.argsort(seg * span + perm.cpu().long())]


@pytest.mark.parametrize("chunk", [1, 7, 128])
def test_work_items_match_their_definition(chunk):
    """``prefill._work_items`` (the kernels ``csr_from_split`` uses, without its scatter) against its definition in
    torch: one item per ``chunk`` entries of each segment, ``seg = searchsorted(work_end, w, right=True)``, padded
    to segments + entries / chunk items; empty segments, a segment count past one scan block (4096)."""
    from kernels.msa.prefill import _work_items

    gen = torch.Generator().manual_seed(chunk)
    counts = torch.randint(0, 300, (4500,), generator=gen) * (torch.rand(4500, generator=gen) < 0.3)
    row_ptr = torch.zeros(counts.numel() + 1, dtype=torch.int64)
    row_ptr[1:] = counts.cumsum(0)
    num_entries = int(row_ptr[-1])
    chunks = (counts + chunk - 1) // chunk
    work_end = chunks.cumsum(0)
    w = torch.arange(counts.numel() + -(-num_entries // chunk))
    want_seg = torch.searchsorted(work_end, w, right=True)
    want_chunk = w - (work_end - chunks).gather(0, want_seg.clamp(max=counts.numel() - 1))
    seg, chunk_idx = _work_items(row_ptr.to(DEVICE), chunk, num_entries)
    assert seg.dtype == chunk_idx.dtype == torch.int32
    assert torch.equal(seg.cpu().long(), want_seg)
    assert torch.equal(chunk_idx.cpu().long(), want_chunk)


@pytest.mark.parametrize("seq_lens,q_lens,shared,min_shared_pct,spare_blocks,lanes", [
    ([2400, 300], [41, 300], 0.8, 0, 0, 8),  # chunked prefill with context; request 0's last tile short; padding tile
    ([2400, 300], [41, 300], 0.5, 75, 0, 8),  # the gate rejects some tiles: those go KV-outer whole
    ([2400, 300], [41, 300], 0.5, 75, 0, 1),  # the same with v13s's one counter per segment
    ([3000], [203], 0.0, 75, 0, 8),  # random selections: every tile rejected, the CSR holds every entry
    ([2600], [150], 1.0, 0, 0, 8),  # all shared: the CSR is (almost) empty
    ([3000], [203], 0.3, 75, 2100, 8),  # a wide block table: 4248 segments, more than one block of the offsets scan
    ([3000], [203], 0.3, 75, 2100, 2),
])
def test_split_csr_matches_torch_build(seq_lens, q_lens, shared, min_shared_pct, spare_blocks, lanes):
    """v10t: the CSR counted by the split kernel (atomics, no sort) has the torch build's offsets and work items,
    and the same entries per segment; slots in any order with -1 holes. v13s: built by two kernels (prefix sums,
    scatter + work items), also over more segments than one program's scan block. v14u: with ``lanes`` counters
    per segment, their totals equal one counter's."""
    from kernels.msa.prefill import build_block_csr, csr_from_split

    qsl = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    lens = torch.tensor(seq_lens, dtype=torch.int32)
    n = int(qsl[-1])
    sel = shuffled_slots(local_selection(qsl, lens, 2, shared, window=8, seed=11), 12)
    sel[:, 5, 3] = -1  # a hole in the middle of a row
    blocks = (max(seq_lens) + 127) // 128 + spare_blocks
    table = torch.randperm(len(seq_lens) * blocks, generator=torch.Generator().manual_seed(3)).view(-1, blocks)
    req, pos = device_requests(qsl, n).to(DEVICE), device_positions(qsl, lens, n).to(DEVICE)
    split = tile_unions(sel.to(DEVICE), req, pos, table.to(torch.int32).to(DEVICE), TILE, 32, 2, min_shared_pct,
                        csr_blocks=blocks, csr_lanes=lanes)
    assert split.seg_count is not None and split.seg_count.numel() == lanes * 2 * len(seq_lens) * blocks
    for chunk in (4, 128):
        got = csr_from_split(split, req, blocks, chunk)
        want = build_block_csr(split.rest, qsl.to(DEVICE), blocks, chunk)
        assert got[4] == want[4]
        for g, w in zip(got[1:4], want[1:4], strict=True):
            assert torch.equal(g.cpu().long(), w.cpu().long())
        kept = int((split.rest >= 0).sum())
        assert int(got[1][-1]) == kept
        assert torch.equal(_segment_sorted(got[0][:kept], got[1]), _segment_sorted(want[0][:kept], want[1]))
    if min_shared_pct == 0 and shared >= 0.8:
        assert int(split.num_work) > 0 and kept < int((sel >= 0).sum())  # both paths have entries
