"""Reference lists split into entries: numbered (margin numbers), author-year with a hanging indent over two
columns and a page break, and entries told apart by a gap only."""
from __future__ import annotations

from tasks.paper.ingest import reference_entries
from tasks.paper.layout import Line


def _line(page: int, x0: float, y0: float, text: str, x1: float | None = None) -> Line:
    return Line(page, (x0, y0, x1 if x1 is not None else x0 + 200, y0 + 9), text, 9.0, False, False)


def test_hanging_indent_over_columns_and_pages() -> None:
    lines = [
        _line(3, 72, 100, "Ada Lovelace. 1843. Notes on the"),
        _line(3, 82, 111, "analytical engine. Taylor."),
        _line(3, 72, 125, "Alan Turing. 1936. On computable"),
        # the right column of the same page: its own left edge
        _line(3, 310, 100, "numbers. Proc. LMS."),
        _line(3, 300, 114, "Grace Hopper. 1952. The education"),
        _line(3, 310, 125, "of a computer."),
        # the next page starts with a continuation (indented), then a new entry
        _line(4, 82, 72, "ACM national meeting, 243-249."),
        _line(4, 72, 86, "John von Neumann. 1945. First draft."),
    ]
    assert reference_entries(lines) == [
        "Ada Lovelace. 1843. Notes on the analytical engine. Taylor.",
        "Alan Turing. 1936. On computable numbers. Proc. LMS.",
        "Grace Hopper. 1952. The education of a computer. ACM national meeting, 243-249.",
        "John von Neumann. 1945. First draft.",
    ]


def test_row_pieces_and_margin_numbers_join() -> None:
    lines = [
        _line(0, 128, 200, "1.", x1=134),
        _line(0, 144, 200, "R. Pascanu and H. Jaeger. A model", x1=500),
        _line(0, 144, 211, "of working memory. 2011."),
        _line(0, 128, 225, "2.", x1=134),
        _line(0, 144, 225, "T. Boraud. Release 1.1.", x1=300),
        _line(0, 320, 225, "2019.", x1=350),  # a justified row cut at a wide space
    ]
    assert reference_entries(lines) == [
        "1. R. Pascanu and H. Jaeger. A model of working memory. 2011.",
        "2. T. Boraud. Release 1.1. 2019.",
    ]


def test_entries_apart_by_a_gap_when_no_line_is_indented() -> None:
    lines = [
        _line(0, 72, 100, "Ada Lovelace. Notes on the"),
        _line(0, 72, 110, "analytical engine."),
        _line(0, 72, 125, "Alan Turing. On computable numbers."),
        _line(0, 72, 140, "Grace Hopper. The education"),
        _line(0, 72, 150, "of a computer."),
    ]
    assert reference_entries(lines) == [
        "Ada Lovelace. Notes on the analytical engine.",
        "Alan Turing. On computable numbers.",
        "Grace Hopper. The education of a computer.",
    ]
    assert reference_entries([]) == []
