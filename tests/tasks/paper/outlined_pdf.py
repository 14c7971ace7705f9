"""A one-page PDF whose table is printed as glyph outlines, the way IEEE Access's production prints its tables:
no text layer in the table, one filled path per word (matplotlib's TextPath outlines of DejaVu Serif), exponents
and subscripts as smaller paths of their own, a raised minus as a flat bar, a bold row drawn glyph by glyph with
grey shading behind it, and booktabs rules drawn as filled bars. The caption and the paragraph under the table
are ordinary text."""
from __future__ import annotations

from pathlib import Path

BODY_PT = 8.0
SCRIPT_PT = 5.6
ROWS = [  # (label, accuracy, rate as (mantissa, exponent)), bold
    ("Baseline", "0.8123", ("1e", "4"), False),
    ("Ours", "0.9011", ("2.5e", "3"), True),
    ("Other", "0.7544", ("3e", "5"), False),
]
COLUMNS_X = (100.0, 220.0, 320.0)


def _outline(shape, text: str, x: float, baseline: float, size: float, bold: bool = False) -> float:
    """Fill `text` as one path at (x, baseline); returns its advance width."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path as MPath
    from matplotlib.textpath import TextPath, TextToPath

    prop = FontProperties(family="DejaVu Serif", weight="bold" if bold else "normal", size=size)
    path = TextPath((0, 0), text, size=size, prop=prop)
    last: tuple[float, float] = (x, baseline)
    for vertices, code in path.iter_segments(curves=True, simplify=False):
        points = [(x + vertices[i], baseline - vertices[i + 1]) for i in range(0, len(vertices), 2)]
        if code == MPath.MOVETO:
            last = points[0]
        elif code == MPath.LINETO:
            shape.draw_line(last, points[0])
            last = points[0]
        elif code == MPath.CURVE3:  # quadratic -> cubic
            (qx, qy), end = points
            c1 = (last[0] + 2 / 3 * (qx - last[0]), last[1] + 2 / 3 * (qy - last[1]))
            c2 = (end[0] + 2 / 3 * (qx - end[0]), end[1] + 2 / 3 * (qy - end[1]))
            shape.draw_bezier(last, c1, c2, end)
            last = end
        elif code == MPath.CURVE4:
            shape.draw_bezier(last, *points)
            last = points[-1]
    shape.finish(color=None, fill=(0, 0, 0), closePath=False)
    return TextToPath().get_text_width_height_descent(text, prop, ismath=False)[0]


def _glyph_by_glyph(shape, text: str, x: float, baseline: float, size: float, bold: bool) -> None:
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(family="DejaVu Serif", weight="bold" if bold else "normal", size=size)
    for i, ch in enumerate(text):
        advance = TextToPath().get_text_width_height_descent(text[:i], prop, ismath=False)[0] if i else 0.0
        if ch != " ":
            _outline(shape, ch, x + advance, baseline, size, bold)


def _exponent(shape, mantissa: str, exponent: str, x: float, baseline: float) -> None:
    """"2.5e⁻³" as IEEE prints it: the mantissa, then a raised flat minus and a raised small digit, apart."""
    x += _outline(shape, mantissa, x, baseline, BODY_PT) + 0.5
    raised = baseline - 0.38 * BODY_PT
    shape.draw_rect((x, raised - 0.45 * SCRIPT_PT - 0.15, x + 0.55 * SCRIPT_PT, raised - 0.45 * SCRIPT_PT + 0.15))
    shape.finish(color=None, fill=(0, 0, 0))
    _outline(shape, exponent, x + 0.55 * SCRIPT_PT + 0.6, raised, SCRIPT_PT)


def write_outlined_table(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_text((72, 90), "Table 1. Accuracy and learning rate of three methods, drawn as outlines.", fontsize=9)
    shape = page.new_shape()
    for y in (100.0, 117.0, 160.0):  # booktabs rules as filled bars
        shape.draw_rect((90, y, 400, y + 0.5))
        shape.finish(color=None, fill=(0, 0, 0))
    shape.draw_rect((90, 128.2, 400, 139.8))  # grey shading behind the bold row
    shape.finish(color=None, fill=(0.85, 0.85, 0.85))
    header_y = 112.0
    _outline(shape, "Method", COLUMNS_X[0], header_y, BODY_PT, bold=True)
    x = COLUMNS_X[1] + _outline(shape, "AP", COLUMNS_X[1], header_y, BODY_PT, bold=True)
    _outline(shape, "50", x + 0.3, header_y + 0.2 * BODY_PT, SCRIPT_PT, bold=True)  # a subscript
    _outline(shape, "Rate", COLUMNS_X[2], header_y, BODY_PT, bold=True)
    for r, (label, accuracy, (mantissa, exponent), bold) in enumerate(ROWS):
        baseline = 126.0 + 11.0 * r
        if bold:
            _glyph_by_glyph(shape, label, COLUMNS_X[0], baseline, BODY_PT, True)
            _glyph_by_glyph(shape, accuracy, COLUMNS_X[1], baseline, BODY_PT, True)
        else:
            _outline(shape, label, COLUMNS_X[0], baseline, BODY_PT)
            _outline(shape, accuracy, COLUMNS_X[1], baseline, BODY_PT)
        _exponent(shape, mantissa, exponent, COLUMNS_X[2], baseline)
    shape.commit()
    page.insert_text((72, 190), "The paragraph under the table is ordinary text of the page.", fontsize=10)
    doc.save(path)
    return path
