"""The ingest bundle: typed records of what was extracted from a paper, and their on-disk layout.

Layout of a bundle folder: `summary.json` (counts, metadata, warnings), `bundle.json` (every record),
`text.md` (sections in reading order), `equations/eq_N.png`, `tables/table_N.csv`, `figures/figure_N.png`,
`references.txt`. Paths inside records are relative to the bundle folder."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BBox = tuple[float, float, float, float]


def rounded_box(x0: float, y0: float, x1: float, y1: float) -> BBox:
    """A box as records store it: points to 0.01."""
    return round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)


@dataclass
class Section:
    title: str
    page: int
    text: str


@dataclass
class Equation:
    id: str
    page: int
    bbox: BBox
    text: str
    number: str | None
    image: str


@dataclass
class Table:
    id: str
    page: int
    bbox: BBox
    caption: str
    header: list[str]
    rows: list[list[str]]
    csv: str
    numeric_cells: int
    warnings: list[str] = field(default_factory=list)
    styles: list[list[str]] = field(default_factory=list)
    """Per body cell (same shape as `rows`): "b" bold, "i" italic, "bi" both, "" plain (bold marks the best result)."""
    header_rows: list[list[str]] = field(default_factory=list)
    """The header lines as printed, one list per line, a spanning header repeated over the columns it spans;
    `header` joins them per column top to bottom with " / " ("Accuracy [%] / α = 0.05")."""
    sources: list[list[str]] = field(default_factory=list)
    """Per body cell where it was read, when not all from word positions: "" the page's words (or OCR), "vision" a
    model's transcription of the table's image that the page confirms (tasks/paper/vision_tables.py)."""


@dataclass
class Figure:
    id: str
    page: int
    bbox: BBox
    kind: str
    """"raster" (an embedded image) or "vector" (clustered drawings)."""
    caption: str
    image: str


@dataclass
class ReportedNumber:
    value: float
    text: str
    source: str
    """"sentence", "table" or "caption"."""
    context: str
    page: int
    ref: dict[str, str] = field(default_factory=dict)
    """Where it sits: {"section": ...} for sentences, {"table", "row", "column"} for cells, {"figure"} for captions."""
    uncertainty: float | None = None
    """The printed spread of the value ("58.9 ± 1.9" -> 1.9), in the value's unit; None when none is printed."""
    style: str = ""
    """For table cells: "b" bold (usually the best result), "i" italic, "bi" both, "" plain."""


@dataclass
class Bundle:
    source: str
    title: str
    metadata: dict[str, str]
    page_count: int
    sections: list[Section]
    equations: list[Equation]
    tables: list[Table]
    figures: list[Figure]
    numbers: list[ReportedNumber]
    references: list[str]
    ocr: bool = False
    warnings: list[str] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        chars = sum(len(s.text) for s in self.sections)
        return {
            "source": self.source,
            "title": self.title,
            "metadata": self.metadata,
            "ocr": self.ocr,
            "counts": {
                "pages": self.page_count,
                "sections": len(self.sections),
                "equations": len(self.equations),
                "tables": len(self.tables),
                "figures": len(self.figures),
                "numbers": len(self.numbers),
                "references": len(self.references),
                "footnotes": len(self.footnotes),
                "text_chars": chars,
                "approx_tokens": chars // 4,
            },
            "sections": [s.title for s in self.sections],
            "warnings": self.warnings,
        }

    def text_markdown(self) -> str:
        parts = [f"# {self.title}\n"]
        parts += [f"## {s.title}\n\n{s.text}\n" for s in self.sections]
        return "\n".join(parts)


def unique_id(base: str, taken: set[str]) -> str:
    """`base` if free, else `base_2`, `base_3`...; records the id as taken."""
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def write_bundle_files(bundle: Bundle, out_dir: Path) -> None:
    """Write the JSON and text files (images and CSVs are written during extraction)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(bundle.summary(), indent=2), encoding="utf-8")
    (out_dir / "bundle.json").write_text(json.dumps(asdict(bundle), indent=2), encoding="utf-8")
    (out_dir / "text.md").write_text(bundle.text_markdown(), encoding="utf-8")
    (out_dir / "references.txt").write_text("\n".join(bundle.references) + "\n", encoding="utf-8")


def load_bundle(out_dir: Path) -> Bundle:
    """Read a bundle folder written by `write_bundle_files`."""
    data = json.loads((out_dir / "bundle.json").read_text(encoding="utf-8"))
    return Bundle(
        source=data["source"],
        title=data["title"],
        metadata=data["metadata"],
        page_count=data["page_count"],
        sections=[Section(**s) for s in data["sections"]],
        equations=[Equation(**{**e, "bbox": tuple(e["bbox"])}) for e in data["equations"]],
        tables=[Table(**{**t, "bbox": tuple(t["bbox"])}) for t in data["tables"]],
        figures=[Figure(**{**f, "bbox": tuple(f["bbox"])}) for f in data["figures"]],
        numbers=[ReportedNumber(**n) for n in data["numbers"]],
        references=data["references"],
        ocr=data.get("ocr", False),
        warnings=data.get("warnings", []),
        footnotes=data.get("footnotes", []),
    )
