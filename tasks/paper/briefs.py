"""The producer's and the verifier's briefs for paper reproduction (prompts live together, apart from logic)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_LISTED_METRICS = 40


def producer_brief(pdf_name: str, timeout_s: float, contract: Mapping[str, Any] | None = None) -> str:
    return _brief(pdf_name, timeout_s) + (_contract_text(contract) if contract else "")


def _contract_text(contract: Mapping[str, Any]) -> str:
    metrics = list(contract["metrics"].items())
    lines = [f"- `{key}`: {what}" for key, what in metrics[:MAX_LISTED_METRICS]]
    if len(metrics) > MAX_LISTED_METRICS:
        lines.append(f"- ... {len(metrics) - MAX_LISTED_METRICS} more in `paper/results_contract.json`")
    files = ", ".join(f"`{f}`" for f in contract["files"]) or "(none)"
    return "\n## Required outputs\nFiles: " + files + "\n\nKeys of `results/metrics.json`:\n" + "\n".join(lines) + "\n"


def _brief(pdf_name: str, timeout_s: float) -> str:
    return f"""# Reproduce the paper {pdf_name}

The paper is extracted under `paper/`: `text.md` (sections in reading order), `tables/*.csv`, `figures/*.png`,
`equations/*.png`, `bundle.json` (every reported number with its context), and `paper.pdf` itself.

Deliver a git repository (this workspace) with `reproduce.sh` at its root that, run as `bash reproduce.sh` in a
FRESH sandbox (no network, no files except what you committed, {timeout_s:.0f} s limit), regenerates from scratch:
- every dataset the experiments need (generate or download nothing at grading time that is not committed code);
- `results/metrics.json`: a JSON object mapping each metric key listed in `paper/results_contract.json` to the
  number your experiment measured;
- `results/table_N.csv` for each paper table (same header and row labels as `paper/tables/table_N.csv`);
- `figures/figure_N.png` for each paper figure.
The starter `reproduce.sh` runs `reproduce.py`; change both as you need. Commit only code and small inputs.

How it is graded: a rubric of Code Development, Code Execution and Result Analysis leaves. Result leaves use ONLY
files written by that re-run: committed or hard-coded results score 0, and copying the paper's numbers into
outputs is caught by the reviewer. Numbers are compared with the paper's within tolerances; figures are compared
with the paper's by eye. Keep the run small enough for the time limit (scale down and say so in README.md).
"""


def verifier_brief() -> str:
    return """# Review a paper reproduction

You see the rubric grading of a fresh re-run of `reproduce.sh`. Hunt for:
- results that are hard-coded, copied from the paper, or read from committed files instead of computed;
- code that does not implement what the paper says (shortcuts, wrong equations, a different data set or metric);
- numbers outside tolerance: say which, by how much, and the likely cause;
- figures that differ from the paper's (axes, trends, scale);
- reproduce.sh steps that fail, are skipped, or would not work on a fresh machine.
Send concrete findings (file, line, number) back to the producer. Never pass a result you could not check.
"""
