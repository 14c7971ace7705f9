"""`ingest_pdf`: a paper PDF -> an ingest bundle on disk (see bundle.py for the layout).

Per page: tables and figures are found first, their areas and captions are taken out of the running text, the rest
is put in reading order, displayed equations are cropped, and headings split the text into sections. The
references section is kept apart; every number in the text, the tables and the captions is listed with context."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.paper.bundle import Bundle, Equation, Figure, ReportedNumber, Section, Table, write_bundle_files
from tasks.paper.equations import extract_equations
from tasks.paper.errors import EmptyPdfError
from tasks.paper.figures import extract_figures
from tasks.paper.layout import (
    EQUATION_NUMBER,
    SECTION_NUMBER,
    Line,
    body_font_size,
    caption_blocks,
    is_heading,
    is_licence,
    is_reference_heading,
    page_lines,
    reading_order,
    running_lines,
)
from tasks.paper.numbers import numbers_in_sentence, sentences
from tasks.paper.pdf import DEFAULT_MAX_PAGES, check_usable, open_pdf
from tasks.paper.rotated import upright
from tasks.paper.tables import extract_tables, table_numbers

if TYPE_CHECKING:
    import pymupdf

REFERENCE_START = re.compile(r"^(\[\d+\]|\d+\.(?:\s|$))")
"""A numbered reference entry: "[3] ...", "3. ...", or the number alone in the margin ("3." then the text)."""
FOOTNOTE_START = re.compile(r"^(\d{1,2}|[*∗†‡§¶])\s*\S")
FOOTNOTE_ZONE = 0.75
RUN_IN_ABSTRACT = re.compile(r"^(Abstract|ABSTRACT)\s*[—–:.]?\s+([A-Z].*)$")
FRONT_MATTER = re.compile(r"^(?:CCS Concepts|Additional Key Words and Phrases|Keywords|Index Terms|ACM Reference Format)\b",
                          re.IGNORECASE)
ABSTRACT_LINE_SHARE = 0.8
"""An unlabelled abstract starts at the first line on page 1 this wide (of the widest there): author lines are short."""
TITLE_SIZE_SLACK = 0.5
TITLE_LINE_GAP = 0.8
"""A title's lines are stacked closer than this many of its font sizes (the author block sits further below)."""
ROW_SLACK_PT = 2.0
REFERENCE_INDENT_PT = 3.0
"""A reference line set this far right of its column's left edge continues an entry (a hanging indent)."""
RUN_IN_HEADING = re.compile(r"^(\S.{0,58}?)\s*[—–:.]\s+(\S.*)$")
"""A paragraph's opening words ended by a dash, colon or full stop: a run-in heading when the outline agrees."""


def ingest_pdf(pdf: Path, out_dir: Path, password: str | None = None, max_pages: int = DEFAULT_MAX_PAGES) -> Bundle:
    """Extract `pdf` into `out_dir`; raises a `PaperError` subclass for unusable PDFs."""
    doc = open_pdf(pdf, password=password, max_pages=max_pages)
    use_ocr = check_usable(doc, pdf)
    doc = upright(doc)  # landscape tables on portrait pages read like any other page
    pages = [_page_lines(page, use_ocr) for page in doc.pages()]
    running = running_lines(pages, [page.rect.height for page in doc.pages()])
    pages = [[ln for ln in lines if id(ln) not in running and not is_licence(ln)] for lines in pages]
    outline = _outline(doc)
    body_size = body_font_size(line for lines in pages for line in lines)
    title, title_lines = _title(doc, pages)
    tables: list[Table] = []
    figures: list[Figure] = []
    equations: list[Equation] = []
    stream: list[tuple[str, Line]] = []
    footnotes: list[str] = []
    taken: set[str] = set()
    for page, lines in zip(doc.pages(), pages, strict=True):
        captions = caption_blocks(lines)
        # Tables are looked for next to "Table N" captions only, so pages without one cost nothing here.
        page_tables = extract_tables(page, lines, captions, out_dir, taken)
        page_figures = extract_figures(page, lines, captions, [t.bbox for t in page_tables], out_dir, taken,
                                       scanned=use_ocr)
        text_lines = _running_text(lines, page_tables, page_figures, captions, title_lines)
        notes = [ln for ln in text_lines if _is_footnote(ln, body_size, page.rect.height)]
        footnotes += _join_footnotes(notes)
        text_lines = [ln for ln in text_lines if ln not in notes]
        front = _front_matter_end(text_lines, body_size) if page.number == 0 else 0.0
        ordered = reading_order(text_lines, page.rect.width, full_above=front)
        page_eqs, used = extract_equations(page, ordered, out_dir, taken)
        for line in ordered:
            if id(line) in page_eqs:
                eq = page_eqs[id(line)]
                text = f"[Equation {eq.number or eq.id}: {eq.text}]"
                stream.append(("equation", Line(line.page, line.bbox, text, line.size, False, False)))
            elif id(line) not in used and not EQUATION_NUMBER.match(line.text):  # stray labels are no text
                # Two headings the outline names apart ("Measurement Scale ..." then "Model 1: ...") stay two.
                if stream and stream[-1][0] == "heading" and _continues_heading(stream[-1][1], line, body_size) \
                        and not (_in_outline(stream[-1][1], outline) and _in_outline(line, outline)):
                    stream[-1] = ("heading", _joined(stream[-1][1], line))
                    continue
                run_in = _run_in_heading(line, outline)
                if run_in:
                    stream += [("heading", run_in[0]), ("text", run_in[1])]
                    continue
                heading = is_heading(line, body_size) or _in_outline(line, outline)
                stream.append(("heading" if heading else "text", line))
        tables += page_tables
        figures += page_figures
        equations += page_eqs.values()
    sections, references, warnings = _sections(_front_matter(stream, outline))
    if not sections and not tables and not figures:
        raise EmptyPdfError(f"{pdf}: no text, tables or figures could be extracted")
    numbers = _numbers(sections, tables, figures)
    warnings += [f"{t.id}: {w}" for t in tables for w in t.warnings]
    bundle = Bundle(
        source=str(pdf), title=title, metadata={k: v for k, v in (doc.metadata or {}).items() if v},
        page_count=doc.page_count, sections=sections, equations=equations, tables=tables, figures=figures,
        numbers=numbers, references=references, ocr=use_ocr, warnings=warnings, footnotes=footnotes,
    )
    write_bundle_files(bundle, out_dir)
    return bundle


FLOAT_BOOKMARK = re.compile(r"(?:table|figure|fig\.?|graph|chart|plate|scheme|listing)\s*[\dA-Z]+\.?$", re.IGNORECASE)


def _bare(title: str) -> str:
    """A heading without its number, case-folded, letters and digits only ("3.1 Neural model" -> "neuralmodel")."""
    title = SECTION_NUMBER.sub("", title.strip())
    return "".join(ch for ch in title.casefold() if ch.isalnum())


def _outline(doc: pymupdf.Document) -> dict[int, set[str]]:
    """The PDF's own outline (bookmarks, written by hyperref from the sections): page index -> bare titles."""
    outline: dict[int, set[str]] = {}
    for _level, title, page in doc.get_toc(simple=True):
        # Some outlines also bookmark every float ("Table 3", "Graph 1"): a float's label is no section heading.
        if page >= 1 and _bare(title) and not FLOAT_BOOKMARK.match(title.strip()):
            outline.setdefault(page - 1, set()).add(_bare(title))
    return outline


def _in_outline(line: Line, outline: dict[int, set[str]]) -> bool:
    """A short line whose text is a bookmark title of its page (or of the page before: the bookmark's anchor is
    set before TeX breaks the page above a heading): a heading even without bold or numbering."""
    bare = _bare(line.text)
    return len(line.text) <= 90 and (bare in outline.get(line.page, ()) or bare in outline.get(line.page - 1, ()))


def _continues_heading(heading: Line, line: Line, body_size: float) -> bool:
    """The second line of a heading wrapped over two ("3. HOW INVARIANT IS THE MEL-FREQUENCY" / "CEPSTRUM ?"):
    right under it, in its font, short, within its width and not numbered itself."""
    styled = heading.bold or heading.size >= body_size + 1.5
    return (styled and line.page == heading.page and abs(line.size - heading.size) < 0.3 and line.bold == heading.bold
            and 0 <= line.bbox[1] - heading.bbox[3] < 0.6 * heading.size and len(line.text) <= 60
            and heading.bbox[0] - 1 <= line.center[0] <= heading.bbox[2] + 1 and not SECTION_NUMBER.match(line.text)
            and not heading.text.rstrip().endswith("."))


def _joined(a: Line, b: Line) -> Line:
    box = (min(a.bbox[0], b.bbox[0]), a.bbox[1], max(a.bbox[2], b.bbox[2]), b.bbox[3])
    return replace(a, text=f"{a.text} {b.text}", bbox=box)


def _run_in_heading(line: Line, outline: dict[int, set[str]]) -> tuple[Line, Line] | None:
    """A paragraph that opens with its own heading ("Results — We were able to...", "Abstract. We..."), split
    into heading and text when the PDF's outline names that heading on this page; on page 1, "Abstract" set
    before its first words ("Abstract We introduce...") even without an outline."""
    match = RUN_IN_HEADING.match(line.text)
    if match and _bare(match.group(1)) in outline.get(line.page, ()):
        return replace(line, text=match.group(1)), replace(line, text=match.group(2))
    match = RUN_IN_ABSTRACT.match(line.text)
    if match and line.page == 0:
        return replace(line, text=match.group(1)), replace(line, text=match.group(2))
    return None


def _front_matter(stream: list[tuple[str, Line]], outline: dict[int, set[str]]) -> list[tuple[str, Line]]:
    """The stream without page 1's indexing blocks, and with the heading of an unlabelled abstract put back."""
    return _unlabelled_abstract(_without_indexing_blocks(stream), outline)


def _without_indexing_blocks(stream: list[tuple[str, Line]]) -> list[tuple[str, Line]]:
    """Page 1's indexing blocks (ACM's "CCS Concepts", "Additional Key Words and Phrases", "ACM Reference Format";
    "Keywords", "Index Terms"), each up to the next heading, are no body text."""
    out: list[tuple[str, Line]] = []
    skipping = False
    for role, line in stream:
        if role == "heading":
            skipping = False
        elif line.page == 0 and FRONT_MATTER.match(line.text):
            skipping = True
        if not skipping:
            out.append((role, line))
    return out


def _unlabelled_abstract(stream: list[tuple[str, Line]], outline: dict[int, set[str]]) -> list[tuple[str, Line]]:
    """An abstract set without a label (ACM's journals) gets its heading back where the outline names one on
    page 1: before the first full-width line above the first heading (the author lines above it are short)."""
    if "abstract" not in outline.get(0, ()) or any(role == "heading" and _bare(ln.text) == "abstract"
                                                   for role, ln in stream):
        return stream
    first = next((i for i, (role, _) in enumerate(stream) if role == "heading"), len(stream))
    front = [(i, ln) for i, (role, ln) in enumerate(stream[:first]) if role == "text" and ln.page == 0]
    if not front:
        return stream
    width = max(ln.bbox[2] - ln.bbox[0] for _, ln in front)
    start = next(i for i, ln in front if ln.bbox[2] - ln.bbox[0] >= ABSTRACT_LINE_SHARE * width)
    return [*stream[:start], ("heading", replace(stream[start][1], text="Abstract")), *stream[start:]]


def _page_lines(page: pymupdf.Page, use_ocr: bool) -> list[Line]:
    textpage = page.get_textpage_ocr(full=True) if use_ocr else None
    return page_lines(page, textpage)


def _title(doc: pymupdf.Document, pages: Sequence[Sequence[Line]]) -> tuple[str, list[Line]]:
    """The title block of page 1: its largest line in the top half and the lines of the same size stacked with it
    (a title set over two or three lines); else the metadata title (often missing or a file name)."""
    top = [ln for ln in pages[0] if ln.page == 0 and ln.bbox[1] < doc[0].rect.height / 2] if pages else []
    if top:
        line = max(top, key=lambda ln: ln.size)
        if line.size > body_font_size(pages[0]) + 1:
            block = _stacked(line, top)
            return _join([ln.text for ln in block]), block
    return (doc.metadata or {}).get("title") or Path(doc.name or "paper").stem, []


def _stacked(seed: Line, lines: Sequence[Line]) -> list[Line]:
    """``seed`` and the lines of its size directly above and below it (no other line between), top to bottom."""
    # Only lines under or over the seed count as neighbours (a side bar beside the title does not part it).
    order = sorted((ln for ln in lines if min(ln.bbox[2], seed.bbox[2]) > max(ln.bbox[0], seed.bbox[0])),
                   key=lambda ln: ln.bbox[1])
    same = [ln for ln in order if abs(ln.size - seed.size) <= TITLE_SIZE_SLACK]
    block = [seed]
    for step in (-1, 1):
        edge = seed
        while True:
            at = order.index(edge) + step
            if not 0 <= at < len(order) or order[at] not in same:
                break
            nxt = order[at]
            gap = (edge.bbox[1] - nxt.bbox[3]) if step < 0 else (nxt.bbox[1] - edge.bbox[3])
            if gap > TITLE_LINE_GAP * seed.size:
                break
            if step < 0:
                block.insert(0, nxt)
            else:
                block.append(nxt)
            edge = nxt
    return block


def _inside(line: Line, bbox: Sequence[float]) -> bool:
    x, y = line.center
    return bbox[0] <= x <= bbox[2] and bbox[1] <= y <= bbox[3]


def _front_matter_end(lines: Sequence[Line], body_size: float) -> float:
    """Top of the first heading on page 1: above it sit the title block's centred, side-by-side author names."""
    tops = [ln.bbox[1] for ln in lines if is_heading(ln, body_size)]
    return min(tops) if tops else 0.0


def _running_text(lines: Sequence[Line], tables: Sequence[Table], figures: Sequence[Figure],
                  captions: dict[int, tuple[str, list[Line]]], title_lines: Sequence[Line]) -> list[Line]:
    """Lines that are neither inside a table/figure, nor part of a caption, nor the title."""
    skip = {id(part) for _, parts in captions.values() for part in parts} | {id(ln) for ln in title_lines}
    areas = [t.bbox for t in tables] + [f.bbox for f in figures]
    return [
        ln for ln in lines
        if id(ln) not in skip and not any(_inside(ln, a) for a in areas)
    ]


def _is_footnote(line: Line, body_size: float, page_height: float) -> bool:
    """Small print in the lowest quarter of the page (affiliations, "equal contribution", footnotes)."""
    return line.size <= body_size - 1.5 and line.bbox[1] > FOOTNOTE_ZONE * page_height


def _join_footnotes(lines: Sequence[Line]) -> list[str]:
    notes: list[str] = []
    for line in sorted(lines, key=lambda ln: (ln.column != "left", ln.bbox[1])):
        if not notes or FOOTNOTE_START.match(line.text):
            notes.append(line.text)
        else:
            notes[-1] = _join([notes[-1], line.text])
    return notes


def _join(parts: list[str]) -> str:
    """Join lines into text, undoing end-of-line hyphenation."""
    text = ""
    for part in parts:
        if text.endswith("-") and part[:1].islower():
            text = text[:-1] + part
        else:
            text = f"{text} {part}" if text else part
    return text


def reference_entries(lines: Sequence[Line]) -> list[str]:
    """The references section's entries, in order. Numbered styles start an entry at "[3]" / "3."; author-year
    styles (ACL, JMLR/PMLR, ACM) set each entry with a hanging indent: an entry starts at its column's left edge and
    its other lines are indented. Where a column shows no indent at all, an entry starts after a gap wider than the
    column's tightest line spacing (evenly spaced lines stay one entry: nothing tells them apart)."""
    rows = _rows(lines)
    if not rows:
        return []
    if REFERENCE_START.match(rows[0][1]):
        starts = [bool(REFERENCE_START.match(text)) for _, text in rows]
    else:
        starts = _hanging_starts([line for line, _ in rows])
    entries: list[list[str]] = []
    for (_, text), start in zip(rows, starts, strict=True):
        if start or not entries:
            entries.append([text])
        else:
            entries[-1].append(text)
    return [_join(parts) for parts in entries]


def _rows(lines: Sequence[Line]) -> list[tuple[Line, str]]:
    """Pieces of one printed row joined, left to right ("1." in the margin and its entry; a justified line cut at a
    wide space): (the row's leftmost piece, the row's text), in reading order."""
    rows: list[list[Line]] = []
    for line in lines:
        last = rows[-1][-1] if rows else None
        if last is not None and last.page == line.page and abs(last.bbox[1] - line.bbox[1]) < ROW_SLACK_PT \
                and line.bbox[0] >= last.bbox[2] - ROW_SLACK_PT:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [(row[0], " ".join(piece.text for piece in row)) for row in rows]


def _hanging_starts(lines: Sequence[Line]) -> list[bool]:
    """Per row's first piece: does an author-year entry start here (see `reference_entries`)? Rows are grouped
    by page and column (a jump of more than a third of the page's text width between left edges splits columns)."""
    groups: dict[tuple[int, bool], list[int]] = {}
    for page in sorted({ln.page for ln in lines}):
        members = [i for i, ln in enumerate(lines) if ln.page == page]
        lefts = sorted({lines[i].bbox[0] for i in members})
        width = max(lines[i].bbox[2] for i in members) - lefts[0]
        jumps = [(b - a, b) for a, b in zip(lefts, lefts[1:], strict=False)]
        split = max(jumps)[1] if jumps and max(jumps)[0] > width / 3 else float("inf")
        for i in members:
            groups.setdefault((page, lines[i].bbox[0] >= split), []).append(i)
    starts = [False] * len(lines)
    for members in groups.values():
        left = min(lines[i].bbox[0] for i in members)
        indented = [lines[i].bbox[0] > left + REFERENCE_INDENT_PT for i in members]
        if any(indented):
            for i, ind in zip(members, indented, strict=True):
                starts[i] = not ind
            continue
        gaps = [lines[b].bbox[1] - lines[a].bbox[3] for a, b in zip(members, members[1:], strict=False)]
        usual = min(gaps, default=0.0)  # the tightest spacing is inside an entry
        starts[members[0]] = True
        for (a, b), gap in zip(zip(members, members[1:], strict=False), gaps, strict=True):
            starts[b] = gap > usual + 0.3 * lines[a].size
    return starts


def _sections(stream: Sequence[tuple[str, Line]]) -> tuple[list[Section], list[str], list[str]]:
    """Split the line stream at headings; the references section becomes a list of entries."""
    sections: list[Section] = []
    current: tuple[str, int, list[str]] | None = None
    in_refs = False
    front: list[str] = []

    def close() -> None:
        if current is not None:
            sections.append(Section(current[0], current[1], _join(current[2])))

    reference_lines: list[Line] = []
    for role, line in stream:
        if role == "heading":
            close()
            in_refs = is_reference_heading(line.text)
            current = None if in_refs else (line.text, line.page, [])
        elif in_refs:
            reference_lines.append(line)
        elif current is not None:
            current[2].append(line.text)
        else:
            front.append(line.text)
    close()
    references = reference_entries(reference_lines)
    warnings: list[str] = []
    if not sections and front:
        warnings.append("no section headings recognised: all running text is in one section 'Body'")
        sections.append(Section("Body", 0, _join(front)))
    return sections, references, warnings


def _numbers(sections: Sequence[Section], tables: Sequence[Table], figures: Sequence[Figure]) -> list[ReportedNumber]:
    found: list[ReportedNumber] = []
    for section in sections:
        text = re.sub(r"\[Equation [^\]]*\]", " ", section.text)
        for sentence in sentences(text):
            for value, printed in numbers_in_sentence(sentence):
                found.append(ReportedNumber(value, printed, "sentence", sentence, section.page, {"section": section.title}))
    for table in tables:
        found += table_numbers(table)
        for value, printed in numbers_in_sentence(table.caption):
            found.append(ReportedNumber(value, printed, "caption", table.caption, table.page, {"table": table.id}))
    for figure in figures:
        for value, printed in numbers_in_sentence(figure.caption):
            found.append(ReportedNumber(value, printed, "caption", figure.caption, figure.page, {"figure": figure.id}))
    return found
