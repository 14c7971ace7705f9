"""Warp-stall samples per SASS instruction from an ncu report's source page, summed and ranked (v14w).

    ncu -i report.ncu-rep --page source --csv --print-source sass > sass.csv
    python -m kernels.bench.ncu_sass_stalls sass.csv [--top 40]

Prints the total samples, the samples per stall reason (columns whose name says "stall"), and the top instructions
with their largest reasons: enough to tell which part of a kernel (GEMM waits, softmax, barriers, stores) holds it.
``--regions "name:a-b;name:c-d"`` also sums the samples over SASS line ranges [a, b) (the L numbers printed), once
a region's lines are known from the listing (v18p).
"""
from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path


def number(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The CSV's header and rows (ncu prints a few '==PROF==' lines before the header: skipped)."""
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith('"') and not ln.startswith('"Kernel Name"')]
    reader = csv.DictReader(lines)
    return list(reader.fieldnames or []), list(reader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--regions", default="", help='"name:a-b;name:c-d": samples per SASS line range [a, b)')
    a = parser.parse_args()
    header, rows = read_rows(a.csv)
    total_col = next((c for c in header if c.startswith("Warp Stall Sampling (All")), None)
    if total_col is None:
        raise SystemExit(f"no 'Warp Stall Sampling (All Samples)' column; columns: {header}")
    reasons = [c for c in header if c.startswith("stall_") and "Not Issued" not in c]
    source = next((c for c in header if c.lower() == "source"), header[1] if len(header) > 1 else header[0])
    total = sum(number(r[total_col]) for r in rows) or 1.0
    by_reason = Counter({c: sum(number(r[c]) for r in rows) for c in reasons})
    print(f"instructions {len(rows)}, stall samples {total:.0f}")
    print("by reason:", ", ".join(f"{c} {v / total:.1%}" for c, v in by_reason.most_common(12) if v))
    # ncu's CSV has no column for some reasons (seen: the samples on HGMMA lines, the wgmma issue's own stall)
    print(f"samples without a listed reason: {1 - sum(by_reason.values()) / total:.1%}")
    ranked = sorted(enumerate(rows), key=lambda ir: -number(ir[1][total_col]))[: a.top]
    for i, r in ranked:
        top = Counter({c: number(r[c]) for c in reasons}).most_common(3)
        why = ", ".join(f"{c.split('_', 1)[-1]} {v:.0f}" for c, v in top if v)
        print(f"{number(r[total_col]):8.0f} {number(r[total_col]) / total:6.1%} L{i:5d} {r[source][:60]:60s} [{why}]")
    for name, first, end in parse_regions(a.regions):
        share = sum(number(r[total_col]) for r in rows[first:end]) / total
        print(f"region {name:45s} L{first:5d}-{end:5d} {share:6.1%}")


def parse_regions(spec: str) -> list[tuple[str, int, int]]:
    """``"name:a-b;..."`` -> [(name, a, b)] (SASS line ranges, end exclusive)."""
    regions = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, span = part.rpartition(":")
        first, _, end = span.partition("-")
        regions.append((name, int(first), int(end)))
    return regions


if __name__ == "__main__":
    main()
