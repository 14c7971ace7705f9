"""The split's counts (kernels/bench/split_stats.py) on a small chunk after 8K of context (CPU: the split kernel under
TRITON_INTERPRET=1; a GPU runs it natively): full locality leaves KV-outer nothing and masks only the diagonal block;
f = 0.9 leaves it entries and masks more of the union."""
from __future__ import annotations

import os
import re

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

from kernels.bench.msa_bench import PrintedRows  # noqa: E402
from kernels.bench.split_stats import split_row  # noqa: E402


def _numbers(note: str) -> dict[str, float]:
    pick = {"items": r"items (\d+)", "blocks": r"union blocks per item ([0-9.]+)", "clean": r"clean ([0-9.]+)",
            "masked": r"masked ([0-9.]+)", "entries": r"entries per token ([0-9.]+)"}
    return {k: float(re.search(p, note).group(1)) for k, p in pick.items()}


def test_locality_shows_in_the_counts():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = PrintedRows()
    for kind in ("f=1.0", "f=0.9"):
        split_row(256, kind, 16, rows, device=device, context=8192)
    full, most = (_numbers(r.note) for r in rows)
    assert full["entries"] == 0 and most["entries"] > 0.5
    assert full["items"] > 0 and most["items"] > 0
    assert full["blocks"] == full["clean"] + full["masked"]
    assert full["masked"] <= 1.0 < most["masked"]  # at f = 1 only the diagonal block needs a mask
