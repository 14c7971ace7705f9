"""A table rebuilt from word positions, ruled or not (booktabs, fully ruled, rule-less all read the same way).

Words come from the characters inside the table's area with their font (bold/italic marks per cell, superscripts
and subscripts by size and baseline). Every printed line is a row, so stacked sub-rows stay apart. Columns are the
gaps in the horizontal projection of the body rows' word groups (words of one cell sit a space apart, cells
further); header lines are laid over those columns, a header that spans several columns is repeated over them
and the levels are joined per column ("Accuracy [%] / α = 0.05"). A row label printed once for a group of rows
(a multirow cell) is given to every row of its group (rows between two horizontal rules)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from tasks.paper.bundle import rounded_box
from tasks.paper.numbers import is_spread, parse_number
from tasks.paper.words import BBox, Row, Word

CELL_GAP_EM = 0.42
MONO_SPACE_EM = 0.3
"""Added to the cell gap between two words set in a monospaced font (a space there is ~0.5 em, not ~0.3)."""
"""Words further apart than this share of the font size are in different cells."""
SHORT_LABEL_CHARS = 6
"""A one-cell line this short is a row-group label (its column counts), not a section line across the table."""
SINGLE_COLUMN_MAX_ROWS = 4
"""A captioned one-column table (a header over a line of symbols) is kept only when this short."""

@dataclass
class Grid:
    bbox: BBox
    header_rows: list[list[str]]
    header: list[str]
    rows: list[list[str]]
    styles: list[list[str]]


def mark_bold(rows: Sequence[Row]) -> None:
    """Bold = heavier than most of the table's words: papers set in a light face print "bold" results in the
    regular weight, so a fixed threshold would miss them."""
    from collections import Counter

    counts = Counter(w.weight for r in rows for w in r.words for _ in w.text)
    if not counts:
        return
    common = counts.most_common(1)[0][0]
    for row in rows:
        for word in row.words:
            word.bold = word.weight > common


def _groups(row: Row, verticals: Sequence[float] = ()) -> list[list[Word]]:
    """Words of a row split where the gap is wider than a cell gap or a vertical rule runs between them."""
    groups: list[list[Word]] = []
    for word in row.words:
        ruled = groups and any(groups[-1][-1].bbox[2] - 0.5 <= x <= word.bbox[0] + 0.5 for x in verticals)
        # Code keeps its spaces: between two words of a monospaced font a space is a full character wide.
        gap = (CELL_GAP_EM + MONO_SPACE_EM) if groups and word.mono and groups[-1][-1].mono else CELL_GAP_EM
        if groups and not ruled and word.bbox[0] - groups[-1][-1].bbox[2] < gap * row.size:
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


def _span(group: Sequence[Word]) -> tuple[float, float]:
    return group[0].bbox[0], max(w.bbox[2] for w in group)


def _column_spans(rows: Sequence[Row], verticals: Sequence[float] = ()) -> list[tuple[float, float]]:
    """Columns from the projection of the word groups of rows with two or more groups (a one-cell row, such as
    a section line inside the table, would bridge every gap)."""
    intervals = [_span(g) for row in rows if len(gs := _groups(row, verticals)) >= 2 for g in gs]
    # A short label printed alone on its line (a multirow "32" between two rows) marks its column too.
    intervals += [_span(gs[0]) for row in rows if len(gs := _groups(row, verticals)) == 1
                  and len(_text(gs[0])) <= SHORT_LABEL_CHARS]
    spans: list[list[float]] = []
    for a, b in sorted(intervals):
        if spans and a <= spans[-1][1] + 1.0:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans]


def _columns_of(group: Sequence[Word], spans: Sequence[tuple[float, float]]) -> list[int]:
    """Indexes of the columns a word group covers (the nearest one when it falls in a gap)."""
    a, b = _span(group)
    covered = [i for i, (x0, x1) in enumerate(spans) if a < x1 - 0.5 and b > x0 + 0.5]
    if covered:
        return covered
    centre = (a + b) / 2
    return [min(range(len(spans)), key=lambda i: min(abs(centre - spans[i][0]), abs(centre - spans[i][1])))]


def _style(words: Sequence[Word]) -> str:
    letters = [w for w in words if any(ch.isalnum() for ch in w.text)] or list(words)
    bold = bool(letters) and all(w.bold for w in letters)
    italic = bool(letters) and all(w.italic for w in letters)
    return ("b" if bold else "") + ("i" if italic else "")


def _text(words: Sequence[Word]) -> str:
    return " ".join(w.text for w in words).strip()


def _rule_between_all(rows: Sequence[Row], rules: Sequence[float]) -> bool:
    """Every pair of consecutive rows has a full rule between them: a boxed grid of cells."""
    spans = sorted((min(w.bbox[1] for w in r.words), max(w.bbox[3] for w in r.words)) for r in rows)
    return len(spans) > 1 and all(any(a[1] - 2 <= y <= b[0] + 2 for y in rules) for a, b in pairwise(spans))


def build_grid(rows: Sequence[Row], segments: Sequence[tuple[float, float, float]],
               verticals: Sequence[float] = (), known_table: bool = False) -> Grid | None:
    """The table's cells from its printed lines and its horizontal rules (y, x0, x1); None when the block does
    not look like a table (fewer than two columns or rows, or hardly any numbers unless `known_table`: a block
    that cannot be prose, such as a table drawn as outlines under its caption)."""
    if len(rows) < 2:
        return None
    mark_bold(rows)
    left = min(w.bbox[0] for r in rows for w in r.words)
    right = max(w.bbox[2] for r in rows for w in r.words)
    # A full rule runs from the table's left edge to its right one; a rule from the second column on (under
    # a multirow label, between its sub-groups) is partial even when nearly as long.
    edge = max(r.size for r in rows)
    full = [(y, a, b) for y, a, b in segments if b - a >= 0.85 * (right - left) and a <= left + edge and b >= right - edge]
    rules = [y for y, _, _ in full]
    partial = [seg for seg in segments if seg not in full]
    header_count = _header_count(rows, rules, boxed=bool(verticals))
    body = list(rows[header_count:]) or list(rows)
    spans = _column_spans(body, verticals)
    if not spans:
        spans = [(min(w.bbox[0] for r in body for w in r.words), max(w.bbox[2] for r in body for w in r.words))]
    if len(spans) < 2 and len(rows) > SINGLE_COLUMN_MAX_ROWS:
        return None  # one column of many lines is a list or prose, not a table
    n = len(spans)
    cells: list[list[str]] = []
    styles: list[list[str]] = []
    for row in body:
        texts: list[list[Word]] = [[] for _ in range(n)]
        for group in _groups(row, verticals):
            cols = _columns_of(group, spans)
            texts[cols[0]].extend(group)
        cells.append([_text(t) for t in texts])
        styles.append([_style(t) if t else "" for t in texts])
    body = _merge_spread_rows(cells, styles, body)
    header_rows: list[list[str]] = []
    for i, row in enumerate(rows[:header_count]):
        line = [""] * n
        below = rows[i + 1].top if i + 1 < len(rows) else row.baseline + row.size
        groups = _groups(row, verticals)
        placed = [(group, _columns_of(_under_rule(group, groups, row.baseline, below, partial, verticals), spans))
                  for group in groups]
        taken = {c for _, cols in placed for c in cols}
        above = header_rows[-1] if header_rows else None
        if i + 1 < header_count and len(placed) >= 2 and all(len(cols) >= 2 for _, cols in placed):
            # Spanning titles side by side over the column groups ("Wiki-Convert" | "Numeracy600K", no rule
            # under them): each spans the widest run of its free columns centred under it.
            first = 1 if rows[header_count - 1].words and not any(
                w.bbox[2] <= spans[0][1] + 1 for w in rows[header_count - 1].words) else 0
            placed = [(group, _widest_centred(cols, taken, spans, sum(_span(group)) / 2, first))
                      for group, cols in placed]
            taken = {c for _, cols in placed for c in cols}
        for group, cols in placed:
            for c in _centred_span(cols, taken, spans, sum(_span(group)) / 2, above, _span(group)):
                line[c] = f"{line[c]} {_text(group)}".strip()
        header_rows.append(line)
    labels = _label_columns(cells)
    _join_wrapped_labels(cells, body, rules, labels)
    _fill_group_labels(cells, body, rules)
    printed = [list(row) for row in cells]
    _fill_label_columns(cells, body, segments, spans, labels)
    keep = [i for i, row in enumerate(cells) if any(row[labels:]) or not _label_only_used(cells, printed[i], i, labels)]
    cells, styles = [cells[i] for i in keep], [styles[i] for i in keep]
    numeric = sum(parse_number(c) is not None for row in cells for c in row[1:])
    filled = sum(1 for row in cells for c in row[1:] if c)
    longest = max((len(c) for row in cells for c in row), default=0)
    if n > 1 and (not filled or (numeric < 0.25 * filled and longest > 40 and not _rule_between_all(rows, rules)
                                 and not _full_text_grid(cells) and not known_table)):
        return None  # prose or a list, not a table (a text table ruled under every row is a table)
    if header_rows:
        header = [_header_text(header_rows, c) for c in range(n)]
    elif header_count == 0:
        header = [""] * n
    else:
        header = cells.pop(0)
        styles.pop(0)
    _join_citation_columns(header_rows, header, cells, styles)
    _unfold_halves(header_rows, header, cells, styles)
    box = (min(w.bbox[0] for r in rows for w in r.words), min(w.bbox[1] for r in rows for w in r.words),
           max(w.bbox[2] for r in rows for w in r.words), max(w.bbox[3] for r in rows for w in r.words))
    return Grid(rounded_box(*box), header_rows, header, cells, styles)


def _unfold_halves(header_rows: list[list[str]], header: list[str], cells: list[list[str]],
                   styles: list[list[str]]) -> None:
    """A long narrow table printed as halves side by side under a repeated header ("Class | #Images | Class |
    #Images"): the right half's rows go under the left half's, so every row has its own label."""
    n = len(header)
    half = n // 2
    if n < 4 or n % 2 or not any(header[:half]) or header[:half] != header[half:]:
        return
    right = [row[half:] for row in cells]
    right_styles = [row[half:] for row in styles]
    for lines in (header_rows, [header], cells, styles):
        for line in lines:
            del line[half:]
    kept = [i for i, row in enumerate(right) if any(row)]
    cells += [right[i] for i in kept]
    styles += [right_styles[i] for i in kept]


CITATION_MARK = re.compile(r"\[\d+(?:[,–-]\s*\d+)*\]")


def _join_citation_columns(header_rows: list[list[str]], header: list[str], cells: list[list[str]],
                           styles: list[list[str]]) -> None:
    """A headerless column that holds only citation marks ("[8]" set apart from "ISO 9000-3") belongs to the
    cell on its left. Joins in place."""
    for c in range(len(header) - 1, 0, -1):
        marks = [row[c] for row in cells if c < len(row) and row[c]]
        if header[c] or not marks or not all(CITATION_MARK.fullmatch(m) for m in marks):
            continue
        for row, style in zip(cells, styles, strict=True):
            if c < len(row):
                row[c - 1] = f"{row[c - 1]} {row.pop(c)}".strip()
                if c < len(style):
                    style.pop(c)
        header.pop(c)
        for line in header_rows:
            if c < len(line):
                line.pop(c)


def _merge_spread_rows(cells: list[list[str]], styles: list[list[str]], rows: list[Row]) -> list[Row]:
    """A line of spreads under a line of values ("99.7" over "(± 0.1)") is the second line of the same row: its
    spreads join the values above them and its label text the label ("spiral" + "(36k parameters)"). Merges
    in place; returns the rows that remain."""
    keep: list[int] = []
    for i, row in enumerate(cells):
        prev = keep[-1] if keep else None
        spreads = [c for c, text in enumerate(row) if text and is_spread(text)]
        others = [c for c, text in enumerate(row) if text and c not in spreads]
        if prev is None or not spreads or any(parse_number(row[c]) is not None for c in others) \
                or any(parse_number(cells[prev][c]) is None for c in spreads):
            keep.append(i)
            continue
        for c, text in enumerate(row):
            if text:
                cells[prev][c] = f"{cells[prev][c]} {text}".strip()
                styles[prev][c] = styles[prev][c] if styles[prev][c] == styles[i][c] else styles[prev][c] or styles[i][c]
    cells[:] = [cells[i] for i in keep]
    styles[:] = [styles[i] for i in keep]
    return [rows[i] for i in keep]


def _under_rule(group: list[Word], line: Sequence[list[Word]], top: float, bottom: float,
                segments: Sequence[tuple[float, float, float]], verticals: Sequence[float] = ()) -> list[Word]:
    """A header over a partial rule (booktabs' cmidrule) spans the columns the rule spans: stretch its box, up to
    the vertical rules beside it. A rule under several headers of the line is a row's rule in a grid drawn cell by
    cell, not a cmidrule."""
    a, b = _span(group)
    for y, x0, x1 in segments:
        if not (top <= y <= bottom + 2 and x0 <= (a + b) / 2 <= x1):
            continue
        if sum(x0 <= sum(_span(other)) / 2 <= x1 for other in line) > 1:
            return group
        x0 = max([x0] + [x for x in verticals if x <= a + 0.5])
        x1 = min([x1] + [x for x in verticals if x >= b - 0.5])
        w = group[0]
        return [Word(w.text, (x0, w.bbox[1], x1, w.bbox[3]), w.size, w.baseline, w.weight, w.italic, w.bold)]
    return group


def _centred_span(cols: list[int], taken: set[int], spans: Sequence[tuple[float, float]], centre: float,
                  above: Sequence[str] | None = None, edges: tuple[float, float] | None = None) -> list[int]:
    """A header centred over several columns without a rule under it ("Accuracy [%]" over five α columns):
    widen it symmetrically while both neighbours in its line are empty; one centred over the gap between two
    columns spans both ("Estimate (%)" over "original" and "reproduction"). Under a header line that has its
    own cell in this column, it is that cell's second line ("tenor" / "sax.") and stays in its column. A short
    header flush with its column's edge ("TC" over a left-aligned "97.4 ± 1.1") is aligned, not centred over the
    gap beside that edge."""
    if len(cols) != 1:
        return cols
    c = cols[0]
    if above and above[c] and (c == 0 or above[c - 1] != above[c]) and (c + 1 >= len(above) or above[c + 1] != above[c]):
        return cols
    n = len(spans)
    lo = hi = cols[0]
    middle = (spans[lo][0] + spans[lo][1]) / 2
    for other in (lo - 1, lo + 1):
        flush = edges is not None and abs(edges[0] - spans[lo][0] if other < lo else edges[1] - spans[lo][1]) <= 1.0
        if 0 <= other < n and other not in taken and not flush:
            gap = (spans[min(lo, other)][1] + spans[max(lo, other)][0]) / 2
            if abs(centre - gap) < abs(centre - middle):
                lo, hi = min(lo, other), max(hi, other)
    while lo - 1 >= 0 and hi + 1 < n and lo - 1 not in taken and hi + 1 not in taken:
        lo, hi = lo - 1, hi + 1
    return list(range(lo, hi + 1))


def _widest_centred(cols: list[int], taken: set[int], spans: Sequence[tuple[float, float]], centre: float,
                    first: int) -> list[int]:
    """The widest run of columns from `first` on, holding `cols` and no other title's column, whose middle is
    the title's centre (within a third of a column pitch: one column more on one side moves it by half a pitch)."""
    pitch = min((b[0] - a[0] for a, b in pairwise(spans)), default=0.0)
    best = cols
    for lo in range(first, cols[0] + 1):
        for hi in range(cols[-1], len(spans)):
            run = range(lo, hi + 1)
            if any(c in taken and c not in cols for c in run) or len(run) <= len(best):
                continue
            if abs((spans[lo][0] + spans[hi][1]) / 2 - centre) <= pitch / 3:
                best = list(run)
    return best


def _header_text(header_rows: Sequence[Sequence[str]], c: int) -> str:
    levels: list[str] = []
    for line in header_rows:
        text = line[c]
        if not text:
            continue
        spanning = (c > 0 and line[c - 1] == text) or (c + 1 < len(line) and line[c + 1] == text)
        if levels and not spanning and not levels[-1].endswith(" /"):
            levels[-1] = f"{levels[-1]} {text}"  # one header cell printed over two lines
        else:
            levels.append(f"{text} /" if spanning else text)
    return " ".join(levels).rstrip(" /")


def _set_like_body(rows: Sequence[Row]) -> bool:
    """The first line starts in the label column, as the next lines do, with their weights (label, then the other
    cells) and numbers (or none, as they have none), and is not all bold: a data line, not a header (a header
    over the values leaves the stub empty, or names columns whose cells are numbers)."""
    def pattern(row: Row) -> tuple[bool, bool, bool]:
        return (row.words[0].bold, any(w.bold for w in row.words[1:]),
                any(parse_number(w.text) is not None for w in row.words[1:]))

    def label_column(a: Row, b: Row) -> bool:  # both lines start in the same (label) column
        return a.words[0].bbox[0] < b.words[0].bbox[2] and b.words[0].bbox[0] < a.words[0].bbox[2]

    return len(rows) > 2 and pattern(rows[0]) == pattern(rows[1]) == pattern(rows[2]) \
        and not all(w.bold for w in rows[0].words) and label_column(rows[0], rows[1])


def _header_below(rows: Sequence[Row], count: int) -> bool:
    """The line under a boxed grid's header line is a second header level ("1 2 3" under "Software process quality
    model") when it leaves the label column empty while every line after it fills it."""
    rest = rows[count + 1:]
    if count + 1 >= len(rows) or not rest:
        return False
    return rows[count].words[0].bbox[0] > max(r.words[0].bbox[2] for r in rest)


def _header_between_rules(rows: Sequence[Row], rules: Sequence[float], count: int) -> bool:
    """A second header line set between two rules ("choice of S | DSC (%) ↑ | HD (mm) ↓" under "Datasets | BraTS
    | FLARE"): bold, no number in it, a rule under it and numbers in the line after."""
    if count + 1 >= len(rows):
        return False
    line, after = rows[count], rows[count + 1]
    worded = [w.bold for w in line.words if any(ch.isalpha() for ch in w.text)]  # arrows and math symbols aside
    return bool(worded) and sum(worded) >= 0.75 * len(worded) \
        and all(parse_number(w.text) is None for w in line.words) \
        and any(line.baseline < y < after.baseline for y in rules) \
        and any(parse_number(w.text) is not None for w in after.words[1:])


def _header_count(rows: Sequence[Row], rules: Sequence[float], boxed: bool = False) -> int:
    """Header lines: those above the first rule under the first line (booktabs' midrule, a ruled grid's line);
    without rules, the lines before the first one that holds a number; none in a boxed grid (`boxed`: vertical
    rules too) whose first line is set like the rest."""
    inner = [y for y in rules if y > rows[0].baseline and y < rows[-1].baseline]
    if boxed and _rule_between_all(rows, rules) and _set_like_body(rows):
        return 0  # a boxed grid (rules round every cell) whose first line is set like the lines under it has no header line
    if inner:
        cut = min(inner)
        count = sum(1 for r in rows if r.baseline < cut)
        if 0 < count < len(rows):
            return count + ((boxed and _header_below(rows, count)) or _header_between_rules(rows, rules, count))
    for i, row in enumerate(rows):
        if any(parse_number(w.text) is not None for w in row.words[1:]):
            return max(i, 1)
    return 1


def _full_text_grid(cells: Sequence[Sequence[str]]) -> bool:
    """Rows of three or more columns with every cell filled (one at most empty): a table of text cells (example
    sentences with their predictions), not prose, whose lines fill one or two cells of a few columns at most."""
    return len(cells) >= 2 and len(cells[0]) >= 3 and all(sum(1 for c in row if c) >= len(row) - 1 for row in cells)


def _label_columns(cells: Sequence[Sequence[str]]) -> int:
    """How many leading columns hold row labels: those before the first column with a measured result."""
    from tasks.paper.tables import RESULT_CELL

    for c in range(len(cells[0]) if cells else 0):
        if any(c < len(row) and RESULT_CELL.search(row[c]) for row in cells):
            return max(c, 1)
    return 1


def _label_only_used(cells: Sequence[Sequence[str]], printed: Sequence[str], i: int, labels: int) -> bool:
    """A label-only line (multirow labels set between rows) whose printed labels its neighbours now carry."""
    mine = [(c, printed[c]) for c in range(labels) if printed[c]]
    return any(0 <= j < len(cells) and any(cells[j][labels:]) and all(cells[j][c] == text for c, text in mine)
               for j in (i - 1, i + 1))


def _fill_label_columns(cells: list[list[str]], rows: Sequence[Row], segments: Sequence[tuple[float, float, float]],
                        spans: Sequence[tuple[float, float]], labels: int) -> None:
    """Label columns after the first (K, grid size, ...): a label printed once is given to every row of its
    group, the rows between the rules (full, or partial ones under that column) around it."""
    for c in range(1, labels):
        centre = (spans[c][0] + spans[c][1]) / 2
        cuts = [y for y, a, b in segments if a - 1 <= centre <= b + 1]
        if not cuts:
            continue
        for group in _rule_groups(rows, cuts):
            holders = [i for i in group if cells[i][c]]
            for i in group:
                if not cells[i][c] and holders:
                    # The nearest label: a multirow label is printed at the middle of its rows.
                    nearest = min(holders, key=lambda h: abs(rows[h].baseline - rows[i].baseline))
                    cells[i][c] = cells[nearest][c]


def _rule_groups(rows: Sequence[Row], rules: Sequence[float]) -> list[list[int]]:
    """Indexes of the rows between two rules (full rules, or a column's own partial ones)."""
    groups: list[list[int]] = []
    for i, row in enumerate(rows):
        if not groups or any(rows[i - 1].baseline < y < row.baseline for y in rules):
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def _join_wrapped_labels(cells: list[list[str]], rows: Sequence[Row], rules: Sequence[float], labels: int) -> None:
    """A row label wrapped over lines of its own ("Max. Info." / "Gain" around the row's values, "Random" /
    "QE only" beside a group of sub-rows) is one label: joined and given to the value rows it belongs to; the
    label lines are emptied (dropped later with the other empty lines)."""
    def label_only(i: int) -> bool:
        return bool(cells[i][0]) and not any(cells[i][1:])

    def unlabelled(i: int) -> bool:
        return not cells[i][0] and any(cells[i][labels:])

    for group in _rule_groups(rows, rules):
        holders = [i for i in group if cells[i][0]]
        if len(holders) >= 2 and all(label_only(i) for i in holders) and any(unlabelled(i) for i in group):
            if min(b - a for a, b in pairwise(holders)) > 2:
                # Two or more value rows between each pair of label lines: one multirow label per sub-group
                # ("Unsup" between its "crawl" and "wiki" rows, then "IdentChar"...), not one wrapped label.
                for i in (i for i in group if unlabelled(i)):
                    nearest = min(holders, key=lambda h: abs(rows[h].baseline - rows[i].baseline))
                    cells[i][0] = cells[nearest][0]
                for i in holders:
                    cells[i][0] = ""
                continue
            text = " ".join(cells[i][0] for i in holders)
            for i in holders:
                cells[i][0] = ""
            for i in group:
                if unlabelled(i):
                    cells[i][0] = text
    for i in range(len(cells) - 1, 0, -1):
        # A label wrapped onto the next line under its row's values ("Dot Product with" / "L2 Regularization",
        # a method then its citation): the next line holds only label text, one line down, with no rule between,
        # and the line after it starts a row of its own.
        j, prev = i, i - 1
        ends = j + 1 >= len(cells) or (cells[j + 1][0] and any(cells[j + 1][labels:]))
        if label_only(j) and cells[prev][0] and any(cells[prev][labels:]) and ends \
                and rows[j].baseline - rows[prev].baseline < 1.6 * rows[j].size \
                and not any(rows[prev].baseline < y < rows[j].baseline for y in rules):
            cells[prev][0] = f"{cells[prev][0]} {cells[j][0]}"
            cells[j][0] = ""
    for i in range(len(cells)):
        if not unlabelled(i):
            continue
        # Label lines set half a line above and below the values (a two-line cell centred on a one-line row).
        near = [j for j in (i - 1, i + 1) if 0 <= j < len(cells) and label_only(j)
                and abs(rows[j].baseline - rows[i].baseline) < 0.8 * rows[i].size]
        if near:
            cells[i][0] = " ".join(cells[j][0] for j in near)
            for j in near:
                cells[j][0] = ""


def _fill_group_labels(cells: list[list[str]], rows: Sequence[Row], rules: Sequence[float]) -> None:
    """Give the row label printed once for several rows (a multirow cell) to each row of its group."""
    if not cells or not any(not row[0] for row in cells):
        return
    groups = _rule_groups(rows, rules)
    if len(groups) == 1 and not rules:
        groups = [[i] for i in range(len(rows))]  # no rules: fill down from the row above
        for i in range(1, len(cells)):
            if not cells[i][0] and cells[i - 1][0]:
                cells[i][0] = cells[i - 1][0]
        return
    for group in groups:
        labels = {cells[i][0] for i in group if cells[i][0]}
        if len(labels) == 1:
            label = labels.pop()
            for i in group:
                cells[i][0] = cells[i][0] or label
