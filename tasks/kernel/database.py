"""The program database of a kernel search, kept in the run directory (artifacts/kernel/):

- verdicts/NNNN.json and sources/NNNN.py: written by each check (the evidence);
- candidates.csv: one row per iteration (pandas), rewritten idempotently from the row for that iteration;
- best/: the best accepted candidate's code and verdict; best_speedup.png: best speed-up against iteration.
Everything is derived from files, so a resumed run (or a repeated on_iteration_end) lands in the same state."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = ["iteration", "parent", "correct", "accepted", "speedup", "ref_ms", "cand_ms", "aa_spread", "cheats",
           "errors"]


@dataclass(frozen=True)
class Best:
    iteration: int
    speedup: float
    cand_ms: float
    ref_ms: float


def kernel_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "artifacts" / "kernel"


def verdict_path(run_dir: Path, iteration: int) -> Path:
    return kernel_dir(run_dir) / "verdicts" / f"{iteration:04d}.json"


def source_path(run_dir: Path, iteration: int) -> Path:
    return kernel_dir(run_dir) / "sources" / f"{iteration:04d}.py"


def save_evidence(run_dir: Path, iteration: int, verdict: dict[str, Any], source: str) -> Path:
    vp = verdict_path(run_dir, iteration)
    vp.parent.mkdir(parents=True, exist_ok=True)
    source_path(run_dir, iteration).parent.mkdir(parents=True, exist_ok=True)
    vp.write_text(json.dumps(verdict, indent=2))
    source_path(run_dir, iteration).write_text(source)
    return vp


def _row(iteration: int, parent: int, verdict: dict[str, Any], accepted: bool) -> dict[str, Any]:
    return {
        "iteration": iteration, "parent": parent or -1,  # -1: derived from the starting files
        "correct": bool(verdict.get("correct")), "accepted": bool(accepted and verdict.get("accepted")),
        "speedup": verdict.get("speedup"), "ref_ms": verdict.get("ref_ms"), "cand_ms": verdict.get("cand_ms"),
        "aa_spread": verdict.get("aa_spread"), "cheats": " | ".join(verdict.get("cheats", []))[:500],
        "errors": " | ".join(verdict.get("errors", []))[:300],
    }


def load_table(run_dir: Path) -> Any:
    import pandas as pd

    path = kernel_dir(run_dir) / "candidates.csv"
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(path, keep_default_na=True)


def best(run_dir: Path) -> Best | None:
    table = load_table(run_dir)
    ok = table[table["accepted"].astype(bool)] if len(table) else table
    ok = ok.dropna(subset=["speedup"]) if len(ok) else ok
    if not len(ok):
        return None
    row = ok.loc[ok["speedup"].astype(float).idxmax()]
    return Best(int(row["iteration"]), float(row["speedup"]), float(row["cand_ms"]), float(row["ref_ms"]))


def record_iteration(run_dir: Path, iteration: int, accepted: bool, parent: int | None = None) -> None:
    """Upsert this iteration's row from its saved verdict, then refresh best/ and the plot. Idempotent.
    `parent`: the iteration the candidate was derived from (0: the starting files; None: the one before)."""
    import pandas as pd

    vp = verdict_path(run_dir, iteration)
    verdict = json.loads(vp.read_text()) if vp.is_file() else {"errors": ["no verdict was saved"], "correct": False}
    table = load_table(run_dir)
    if parent is None:
        previous = table[table["iteration"] < iteration]["iteration"]
        parent = int(previous.max()) if len(previous) else 0
    table = table[table["iteration"] != iteration]
    row = pd.DataFrame([_row(iteration, parent, verdict, accepted)], columns=COLUMNS)
    table = row if not len(table) else pd.concat([table, row], ignore_index=True)
    table = table.sort_values("iteration").reset_index(drop=True)
    out = kernel_dir(run_dir) / "candidates.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(out)  # atomic: a crash never leaves half a database
    _refresh_best(run_dir)
    plot_best(run_dir)


def _refresh_best(run_dir: Path) -> None:
    b = best(run_dir)
    dest = kernel_dir(run_dir) / "best"
    if b is None:
        return
    dest.mkdir(parents=True, exist_ok=True)
    src = source_path(run_dir, b.iteration)
    if src.is_file():
        shutil.copy(src, dest / "candidate.py")
    if verdict_path(run_dir, b.iteration).is_file():
        shutil.copy(verdict_path(run_dir, b.iteration), dest / "verdict.json")
    (dest / "BEST.json").write_text(json.dumps(b.__dict__))


def best_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """Best accepted speed-up so far at each iteration (0 before the first accepted candidate)."""
    table = load_table(run_dir)
    xs, ys, cur = [], [], 0.0
    for _, r in table.sort_values("iteration").iterrows():
        if bool(r["accepted"]) and r["speedup"] == r["speedup"] and r["speedup"] is not None:
            cur = max(cur, float(r["speedup"]))
        xs.append(int(r["iteration"]))
        ys.append(cur)
    return xs, ys


def plot_best(run_dir: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = best_curve(run_dir)
    if not xs:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.step(xs, ys, where="post", color="tab:blue")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("iteration")
    ax.set_ylabel("best verified speed-up (x)")
    ax.set_title("Kernel search: best speed-up so far")
    fig.tight_layout()
    path = kernel_dir(run_dir) / "best_speedup.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
