"""Task-specific views: what a kernel run and a paper run show beyond the common run page.

Conventions read (all optional; a missing file shows as "not yet"):
  kernel: artifacts/kernel/candidates.csv (any columns), artifacts/kernel/best_speedup.png, artifacts/kernel/best/*
  paper:  artifacts/paper/rubric.json (tree: id, requirements, weight, score, sub_tasks), artifacts/paper/report.html,
          files under artifacts/paper/tables/ and artifacts/paper/figures/ paired by name: `<name>.paper.<ext>` with
          `<name>.reproduced.<ext>` (or `paper/<name>.<ext>` with `reproduced/<name>.<ext>`); other files of the same
          name (`<name>.deviation.csv`, `<name>_compare.png`) are shown with the pair.
"""
from __future__ import annotations

import csv
import io
import json
import re
import stat
from pathlib import Path
from typing import Any

from sandboxes import hostfs

_MAX_ROWS = 5000
_MAX_CODE_CHARS = 200_000
_IMAGE = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
_TEXT = {".md", ".txt", ".tex", ".json"}
_PAPER_WORDS = {"paper", "original", "reference"}
_REPRO_WORDS = {"reproduced", "reproduction", "ours"}
_ROLE_SUFFIX = re.compile(r"^(?P<name>.+?)[._-](?P<role>paper|original|reference|reproduced|reproduction|ours|deviation|compare)$")


_MAX_READ = 32 << 20


def _text(run_dir: Path, path: Path, limit: int = _MAX_READ) -> str:
    """A run file's text, read like the files route: from the run directory down, no link followed (artifacts
    can be sandbox-written)."""
    return hostfs.read_bytes(run_dir, str(path.relative_to(run_dir)), limit).decode("utf-8", errors="replace")


def _files(run_dir: Path, folder: Path) -> list[Path]:
    """Regular files under a folder of the run, found without following links."""
    try:
        return [folder / rel for rel, st in hostfs.walk(run_dir, str(folder.relative_to(run_dir)))
                if stat.S_ISREG(st.st_mode)]
    except (OSError, ValueError):
        return []


def _is_file(run_dir: Path, path: Path) -> bool:
    return hostfs.is_regular(run_dir, str(path.relative_to(run_dir)))


def read_csv(run_dir: Path, path: Path, max_rows: int = _MAX_ROWS) -> dict[str, Any]:
    """A CSV file of the run as columns + rows (strings), capped at `max_rows`; one that is no CSV (a re-run wrote
    its content) is a one-cell table saying why, never an error of the whole page."""
    rows: list[list[str]] = []
    total = 0
    try:
        with io.StringIO(_text(run_dir, path), newline="") as f:
            reader = csv.reader(f)
            columns = next(reader, [])
            for row in reader:
                total += 1
                if len(rows) < max_rows:
                    rows.append(row)
    except csv.Error as exc:
        return {"columns": ["unreadable"], "rows": [[f"{path.name}: {exc}"]], "total": 1}
    return {"columns": columns, "rows": rows, "total": total}


def kernel_view(run_dir: Path) -> dict[str, Any]:
    """Best-speed-up plot, candidate table and best candidate code of a kernel run."""
    root = run_dir / "artifacts" / "kernel"
    plot = root / "best_speedup.png"
    table = root / "candidates.csv"
    best = []
    for path in sorted(_files(run_dir, root / "best")):
        text = _text(run_dir, path, _MAX_CODE_CHARS * 4)
        best.append({"path": str(path.relative_to(run_dir)), "code": text[:_MAX_CODE_CHARS]})
    return {
        "kind": "kernel",
        "plot": str(plot.relative_to(run_dir)) if _is_file(run_dir, plot) else None,
        "candidates": read_csv(run_dir, table) if _is_file(run_dir, table) else None,
        "best": best,
    }


def rubric_node(node: dict[str, Any]) -> dict[str, Any]:
    """A rubric node normalised for the page (label, score, weight, children), recursively."""
    children = node.get("sub_tasks") or node.get("children") or []
    return {
        "id": node.get("id"),
        "label": str(node.get("requirements") or node.get("name") or node.get("title") or node.get("id") or "?"),
        "score": node.get("score"),
        "weight": node.get("weight"),
        "category": node.get("task_category"),
        "explanation": node.get("explanation"),
        "children": [rubric_node(c) for c in children if isinstance(c, dict)],
    }


def _role_and_key(rel: Path) -> tuple[str, str]:
    """('paper' | 'reproduced' | 'other', pairing key) of a table/figure file."""
    dirs = {part.lower() for part in rel.parts[:-1]}
    stem = rel.stem
    match = _ROLE_SUFFIX.match(stem)
    if match:
        role = match.group("role").lower()
        stem = match.group("name")
    else:
        role = next((d for d in dirs if d in _PAPER_WORDS | _REPRO_WORDS), "other")
    kind = "paper" if role in _PAPER_WORDS else "reproduced" if role in _REPRO_WORDS else "other"
    section = "figures" if rel.suffix.lower() in _IMAGE else "tables"
    return kind, f"{section}/{stem}"


def _item(run_dir: Path, path: Path) -> dict[str, Any]:
    """How the page shows one table or figure file."""
    rel = str(path.relative_to(run_dir))
    suffix = path.suffix.lower()
    if suffix in _IMAGE:
        return {"path": rel, "type": "image"}
    if suffix == ".csv":
        return {"path": rel, "type": "table", "table": read_csv(run_dir, path, max_rows=500)}
    if suffix in {".html", ".htm"}:
        return {"path": rel, "type": "html"}
    if suffix in _TEXT:
        return {"path": rel, "type": "text", "text": _text(run_dir, path, 200_000)[:50_000]}
    return {"path": rel, "type": "file"}


def paper_pairs(run_dir: Path) -> list[dict[str, Any]]:
    """Tables and figures, each paper version next to its reproduced version."""
    root = run_dir / "artifacts" / "paper"
    pairs: dict[str, dict[str, Any]] = {}
    files = [p for section in ("tables", "figures") for p in sorted(_files(run_dir, root / section))]
    for path in files:
        role, key = _role_and_key(path.relative_to(root))
        pair = pairs.setdefault(key, {"name": key, "paper": None, "reproduced": None, "other": []})
        if role == "other":
            pair["other"].append(_item(run_dir, path))
        else:
            pair[role] = _item(run_dir, path)
    return list(pairs.values())


def paper_view(run_dir: Path) -> dict[str, Any]:
    """Rubric tree with scores, the report, and paper-vs-reproduced tables and figures of a paper run."""
    root = run_dir / "artifacts" / "paper"
    rubric = None
    if _is_file(run_dir, root / "rubric.json"):
        try:
            data = json.loads(_text(run_dir, root / "rubric.json"))
            rubric = rubric_node(data) if isinstance(data, dict) else None
        except ValueError:
            rubric = None
    report = root / "report.html"
    return {
        "kind": "paper",
        "rubric": rubric,
        "report": str(report.relative_to(run_dir)) if _is_file(run_dir, report) else None,
        "pairs": paper_pairs(run_dir),
    }


def task_view(run_dir: Path, kind: str) -> dict[str, Any] | None:
    """The task view of a run, or None for kinds without one (code runs)."""
    if kind == "kernel":
        return kernel_view(run_dir)
    if kind == "paper":
        return paper_view(run_dir)
    return None
