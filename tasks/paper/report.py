"""The paper section of a run's report: report.md markdown and artifacts/paper/report.html with the rubric tree
and scores, paper-vs-reproduced tables (pandas), figures side by side (matplotlib), every numeric deviation with
its size, and the verifier's verdicts. Idempotent: everything is rebuilt from files on each call."""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.paper.artifacts import PaperArtifacts
from tasks.paper.bundle import Bundle, Table, load_bundle
from tasks.paper.grading import Grading, LeafGrade
from tasks.paper.numbers import parse_number
from tasks.paper.rubric import RubricNode, load_rubric, save_rubric
from tasks.text import md_inline

if TYPE_CHECKING:
    import pandas as pd


def write_report(run_dir: Path) -> str:
    """Write rubric.json (scored), tables/, figures/ and report.html; return the markdown section."""
    art = PaperArtifacts(run_dir)
    best = art.best()
    if best is None or not art.source_rubric.is_file():
        return "## Paper reproduction\n\nNo iteration was graded yet.\n"
    n, grading = best
    rubric = load_rubric(art.source_rubric)
    save_rubric(rubric, art.graded_rubric, grading.scores)
    bundle = load_bundle(art.bundle)
    outputs = art.iteration(n) / "outputs"
    tables = [_compare_table(t, art, outputs) for t in bundle.tables]
    figures = [_compare_figure(f.id, art.bundle / f.image, outputs / "figures" / f"{f.id}.png", art.root)
               for f in bundle.figures]
    verdicts = _verdicts(run_dir)
    # backslashreplace: findings and the judge's explanations may hold lone surrogates (a model's JSON escapes)
    art.html.write_text(_html(bundle, rubric, n, grading, tables, figures, verdicts), encoding="utf-8",
                        errors="backslashreplace")
    return _markdown(rubric, n, grading, verdicts)


def _compare_table(table: Table, art: PaperArtifacts, outputs: Path) -> tuple[str, pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """Paper table, reproduced table (if the re-run wrote one) and their numeric difference, saved as CSV."""
    import pandas as pd

    paper = pd.DataFrame(table.rows, columns=table.header)
    out_dir = art.root / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    paper.to_csv(out_dir / f"{table.id}.paper.csv", index=False)
    path = outputs / "results" / f"{table.id}.csv"
    if not path.is_file():
        return table.caption or table.id, paper, None, None
    try:
        reproduced = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError, OSError) as exc:  # the re-run's file: anything can be in it
        note = pd.DataFrame([{"unreadable": f"{path.name}: {exc}"[:300]}])
        return table.caption or table.id, paper, note, None
    reproduced.to_csv(out_dir / f"{table.id}.reproduced.csv", index=False)
    try:
        deviation = _deviation(paper, reproduced)
    except (IndexError, KeyError, TypeError) as exc:  # a reproduced table of another shape
        return table.caption or table.id, paper, reproduced, pd.DataFrame([{"not comparable": str(exc)[:200]}])
    deviation.to_csv(out_dir / f"{table.id}.deviation.csv", index=False)
    return table.caption or table.id, paper, reproduced, deviation


def _deviation(paper: pd.DataFrame, reproduced: pd.DataFrame) -> pd.DataFrame:
    """reproduced − paper for every numeric cell matched by row label (first column) and column name."""
    import pandas as pd

    label = paper.columns[0]
    rows = {str(r[reproduced.columns[0]]).strip().lower(): r for _, r in reproduced.iterrows()}
    out = []
    for _, row in paper.iterrows():
        match = rows.get(str(row[label]).strip().lower())
        line: dict[str, Any] = {label: row[label]}
        for col in paper.columns[1:]:
            want = parse_number(str(row[col]))
            got = parse_number(str(match[col])) if match is not None and col in match else None
            line[col] = round(got - want, 6) if want is not None and got is not None else None
        out.append(line)
    return pd.DataFrame(out)


def _compare_figure(fig_id: str, paper_png: Path, reproduced_png: Path, root: Path) -> tuple[str, str | None]:
    """A side-by-side PNG (paper left, reproduction right) under figures/; the path relative to `root`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    if not paper_png.is_file():
        return fig_id, None
    out_dir = root / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    # <name>.paper.png / <name>.reproduced.png: the run viewer pairs files by these names.
    shutil.copy2(paper_png, out_dir / f"{fig_id}.paper.png")
    if reproduced_png.is_file():
        shutil.copy2(reproduced_png, out_dir / f"{fig_id}.reproduced.png")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, path, title in ((axes[0], paper_png, "paper"), (axes[1], reproduced_png, "reproduced")):
        ax.axis("off")
        # parse_math=False: an error message quotes the re-run's file ("chunk b'$\\^$'"), never mathtext to parse
        ax.set_title(f"{fig_id}: {title}", parse_math=False)
        ax.text(0.5, 0.5, "not produced by the re-run", ha="center", va="center", parse_math=False)
        if path.is_file():
            try:
                _check_pixels(path)
                ax.imshow(mpimg.imread(path))
                ax.texts[-1].remove()
            except Exception as exc:  # noqa: BLE001 - a broken image from the re-run must not break the report
                ax.texts[-1].set_text(f"unreadable image: {exc}"[:80])
    out = root / "figures" / f"{fig_id}_compare.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return fig_id, out.relative_to(root).as_posix()


MAX_PIXELS = 16_000_000
"""The largest image drawn into a comparison (4000 x 4000): a PNG of a few hundred KB can hold 150 megapixels,
which matplotlib would decode to gigabytes of floats."""


def _check_pixels(path: Path) -> None:
    """ValueError for an image with more than MAX_PIXELS pixels (only its header is read)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the reason
        with Image.open(path) as image:
            width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"{width}x{height} pixels, more than {MAX_PIXELS}")


def _verdicts(run_dir: Path) -> list[dict[str, Any]]:
    """The verifier's verdict of each finished iteration (iterations/NNNN.json), as the spine wrote it."""
    found = []
    for path in sorted((run_dir / "iterations").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        verdict = data.get("verdict") or {}
        if not isinstance(verdict, dict):
            verdict = {"verdict": str(verdict)}
        found.append({"iteration": data.get("iteration"), "verdict": verdict.get("verdict"),
                      "findings": list(verdict.get("findings") or [])})
    return found


def _tree_md(node: RubricNode, scores: dict[str, float], depth: int = 0) -> list[str]:
    lines = [f"{'  ' * depth}- **{scores.get(node.id, 0):.2f}** (w {node.weight:g}) {node.requirements}"]
    for child in node.sub_tasks:
        lines += _tree_md(child, scores, depth + 1)
    return lines


def _deviations(grading: Grading) -> list[LeafGrade]:
    return [g for g in grading.leaves if g.method == "numeric"]


def _markdown(rubric: RubricNode, n: int, grading: Grading, verdicts: list[dict[str, Any]]) -> str:
    lines = ["## Paper reproduction", "",
             f"Best weighted rubric score: **{grading.score:.3f}** (iteration {n}; graded with "
             f"{grading.judge_calls} judge calls). "
             "Full page: `artifacts/paper/report.html`; scored rubric: `artifacts/paper/rubric.json`.", "",
             "### Rubric", "", *_tree_md(rubric, grading.scores), "", "### Numeric results", "",
             "| leaf | paper | reproduced | abs dev | rel dev | tolerance | ok |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for g in _deviations(grading):
        rel = f"{g.rel_deviation:.2%}" if g.rel_deviation is not None else "-"
        got = f"{g.got:g}" if g.got is not None else "missing"
        dev = f"{g.abs_deviation:.4g}" if g.abs_deviation is not None else "-"
        lines.append(f"| {g.id} | {g.expected:g} | {got} | {dev} | {rel} | ±{g.tolerance:g} | {'yes' if g.score else 'no'} |")
    if verdicts:
        lines += ["", "### Verifier verdicts", ""]
        lines += [f"- iteration {v['iteration']}: {md_inline(str(v['verdict']))}"
                  + "".join(f"\n  - {md_inline(str(f))}" for f in v["findings"][:5])
                  for v in verdicts]
    return "\n".join(lines) + "\n"


def _tree_html(node: RubricNode, scores: dict[str, float], grades: dict[str, LeafGrade]) -> str:
    score = scores.get(node.id, 0.0)
    color = "#2a7" if score >= 0.999 else ("#c33" if score <= 0.001 else "#d90")
    head = (f'<span style="color:{color}"><b>{score:.2f}</b></span> <small>w{node.weight:g}</small> '
            f"{html.escape(node.requirements)}")
    if node.id in grades:
        g = grades[node.id]
        head += f' <small><i>[{html.escape(node.task_category or "")}; {g.method}] {html.escape(g.explanation)}</i></small>'
    kids = "".join(_tree_html(c, scores, grades) for c in node.sub_tasks)
    return f"<li>{head}" + (f"<ul>{kids}</ul>" if kids else "") + "</li>"


def _html(bundle: Bundle, rubric: RubricNode, n: int, grading: Grading, tables: list, figures: list,
          verdicts: list[dict[str, Any]]) -> str:
    import pandas as pd

    grades = {g.id: g for g in grading.leaves}
    parts = [f"<h1>Reproduction of {html.escape(bundle.title)}</h1>",
             f"<p>Best weighted rubric score <b>{grading.score:.3f}</b> (iteration {n}; graded with "
             f"{grading.judge_calls} judge calls).</p>",
             "<h2>Rubric</h2><ul>", _tree_html(rubric, grading.scores, grades), "</ul>", "<h2>Deviations</h2>"]
    devs = [{"leaf": g.id, "paper": g.expected, "reproduced": g.got, "abs_dev": g.abs_deviation,
             "rel_dev": g.rel_deviation, "tolerance": g.tolerance, "within": bool(g.score)} for g in _deviations(grading)]
    parts.append(pd.DataFrame(devs).to_html(index=False, na_rep="missing") if devs else "<p>No numeric leaves.</p>")
    parts.append("<h2>Tables: paper | reproduced | reproduced − paper</h2>")
    for caption, paper, reproduced, deviation in tables:
        cells = [paper.to_html(index=False)]
        if reproduced is None:
            cells.append("<p>not produced by the re-run</p>")
        else:
            cells.append(reproduced.to_html(index=False))
            if deviation is not None:
                cells.append(deviation.to_html(index=False, na_rep="-"))
        parts.append(f"<h3>{html.escape(caption)}</h3><table><tr>" + "".join(f"<td valign=top>{c}</td>" for c in cells)
                     + "</tr></table>")
    parts.append("<h2>Figures: paper | reproduced</h2>")
    for fig_id, rel in figures:
        parts.append(f'<h3>{fig_id}</h3><img src="{rel}" style="max-width:100%">' if rel else f"<p>{fig_id}: no image</p>")
    parts.append("<h2>Verifier verdicts</h2><ul>")
    for v in verdicts:
        items = "".join(f"<li>{html.escape(str(f))}</li>" for f in v["findings"])
        parts.append(f"<li>iteration {v['iteration']}: <b>{html.escape(str(v['verdict']))}</b><ul>{items}</ul></li>")
    parts.append("</ul>")
    style = "body{font-family:sans-serif;max-width:1200px;margin:auto} table{border-collapse:collapse} td,th{padding:2px 6px}"
    return f"<!doctype html><html><head><meta charset=utf-8><title>Paper reproduction</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
