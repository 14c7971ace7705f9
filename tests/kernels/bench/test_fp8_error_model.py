"""The FP8 error model (CPU): on peaked inputs Q's e4m3 rounding is what the FP8 step's error is made of, and the
two-term Q of variant 30 removes it; and ``peaked_case`` does what it says (its last token returns the aimed-at value)."""
from __future__ import annotations

import torch

from kernels.bench.fp8_error_model import VARIANTS, errors
from kernels.msa import sparse_attention
from kernels.msa.inputs import dominated_value, local_selection, make_case, peaked_case
from tests.kernels.msa.checks import rel_err


def test_peaked_inputs_put_the_fp8_error_in_q():
    case = peaked_case(make_case([3000], [3000], 64, 4, 128, torch.bfloat16, "cpu", seed=5))
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=6)
    err = errors(case, sel, tail=16)
    step, l_rounded, q_only, p_only, two_term = (err[v] for v in VARIANTS)
    assert q_only > 3 * p_only, err  # Q's rounding dominates
    assert abs(l_rounded - step) < 0.1 * step, err  # the normaliser is not where the error is
    assert two_term < 0.3 * step, err  # two e4m3 terms for Q take most of it away


def test_peaked_case_last_token_returns_its_aimed_at_value():
    case = peaked_case(make_case([3000], [3000], 64, 4, 128, torch.bfloat16, "cpu", seed=5))
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=6)
    qsl = torch.tensor([0, 1], dtype=torch.int32)
    out = sparse_attention(case.q[-1:], case.kv_cache, sel[:, -1:].contiguous(), case.block_table, qsl,
                           case.seq_lens)
    assert rel_err(out[0, :16], dominated_value(case).expand(16, -1)) < 1e-3
    assert rel_err(out[0, 16:32], dominated_value(case).expand(16, -1)) > 0.5  # KV head 1 is not aimed
