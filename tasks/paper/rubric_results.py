"""Result Analysis leaves from what a paper reports as its results: results tables first, then numbers and claims
in results-like text, then results figures.

What a reproducer checks first is the paper's headline comparison, so:
- a table is a results table unless its caption says it lists hyper-parameters, settings, data statistics,
  notation or prompts; columns of counts and set-up values (#params, batch size, learning rate, #settings...) are
  never results;
- each leaf names its table, row and column and the printed number; rows of the paper's own method (bold or marked
  "ours", or named like the method in the title) come first and weigh more than baseline rows;
- the tolerance comes from the paper's own spread: the ± it prints, else half the gap to the nearest other row of
  the same column (so a value within tolerance still ranks the same against its closest competitor), never below
  one unit of the printed precision and never above `MAX_RELATIVE_TOLERANCE` of the value;
- a table's weight follows how often the text cites it (appendix tables weigh 1).
Equations and hyper-parameter values never become leaves."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tasks.paper import numbers
from tasks.paper.bundle import Bundle, Figure, Table
from tasks.paper.numbers import MINUS_SIGNS, decimals_of, numbers_in_sentence, sentences
from tasks.paper.tables import row_label

MAX_RELATIVE_TOLERANCE = 0.05
MAX_TABLE_LEAVES = 40
"""Per table; the method's rows are taken first. Numeric leaves cost no model call when graded."""
MAX_RESULT_LEAVES = 160
"""Over all tables, shared out evenly (at least MIN_TABLE_SHARE a table) so no table is left without leaves."""
MIN_TABLE_SHARE = 12
MAX_TEXT_LEAVES = 10
MAX_CLAIMS = 8
NOT_RESULTS_TABLE = re.compile(
    r"hyper-?param|\bparameters?\b(?! estimate)|\bpriors?\b|overview of|\bdata used\b|setting|configuration|(?:data ?(?:set)?|corpus|corpora) statistic|statistics of the data|notation|definition|prompt|example|implementation detail|"
    r"training detail|glossary|symbol|overview of (?:the )?data|data ?sets? (?:used|summary|details)|licen[cs]e|"
    r"(?:quantity|amount|size) of (?:the )?(?:data|training)|statistics of (?:the )?(?:\w+ )?data|"
    r"(?:software|framework|library|package)s? versions?|versions? of (?:the )?(?:software|frameworks?|librar(?:y|ies)|packages?|tools?)",
    re.IGNORECASE)
ELIDED_CELL = re.compile(r"(?:\.\s*){3}|(?:·\s*){3}|…|⋮|⋯")
MEASURED_SCORE = re.compile(r"\bF[1₁] scores?\b|\baccuracy\b|\bBLEU\b|\bperplexity\b", re.IGNORECASE)
IDENTIFIER_CELL = re.compile(r"^\d+[A-Za-z]$")
SUMMARY_COLUMN = re.compile(r"\b(?:average|avg|mean|overall|total|all)\b", re.IGNORECASE)
"""A column that sums up the others: its cells come before the per-item ones when a table is cut."""
SUMMARY_ROW = re.compile(r"^(?:[μµ]|mean|average|avg\.?|overall)\b", re.IGNORECASE)
"""A row that sums up the rows above it (the mean over 41 languages): its cells come first when a table is cut."""
SETUP_COLUMN = re.compile(
    r"(?:#|\bnum(?:ber)?s?\b(?: of)?)\s*(?:params?|parameters|settings?|layers?|heads?|samples?|examples?|gpus?|"
    r"runs?|seeds?|train|test|classes|epochs?)|\beqn\b|\bequation|\bparams?\b|parameters|\bsize\b|batch|learning rate|\blr\b|epochs?|\bsteps?\b|\bseeds?\b|"
    r"\byears?\b|layers|hidden|heads|\bdim|settings|count|\bn\b|samples|tokens|warm-?up|decay|dropout",
    re.IGNORECASE)
SETUP_SENTENCE = re.compile(
    r"learning rate|batch size|epochs?\b|weight decay|hyper-?param|we set|\bset to\b|ranging from|dropout|warm-?up|momentum|random seed|"
    r"trained for|we use|we train|optimi[sz]er|\bconsist|contain|split into|we collect|we sample|\bet al\b",
    re.IGNORECASE)
RESULTS_SECTION = re.compile(r"experiment|result|evaluation|ablation|benchmark|performance|finding|analysis|"
                             r"abstract|conclusion|discussion", re.IGNORECASE)
APPENDIX = re.compile(r"appendix|supplement", re.IGNORECASE)
CLAIM = re.compile(r"outperform|surpass|\bimproves?\b|improvements? (?:of|over)|\bbeats?\b|exceed|speed-?ups?\b|"
                   r"achiev|comparable to|on par|\bmatch(?:es)?\b|(?:better|worse|higher|lower|faster|slower) than|"
                   r"\breduces?\b|gains? of|\d\s*(?:%|×)", re.IGNORECASE)
AUTHORS_VOICE = re.compile(r"\b(?:we|our|ours)\b|results? (?:show|indicate|demonstrate)", re.IGNORECASE)
OURS = re.compile(r"\bours\b|\(ours\)|proposed|\bour (?:method|model|approach)", re.IGNORECASE)
NOT_RESULT_FIGURE = re.compile(r"overview|architecture|framework|pipeline|illustration|example|diagram|schematic|"
                               r"workflow|sample|visuali[sz]ation of (?:the )?(?:data|input)", re.IGNORECASE)
RESULT_FIGURE = re.compile(r"result|accuracy|error|loss|performance|compar|\bvs\.?\b|versus|curve|scal|speed|"
                           r"throughput|latency|ablation|score|reward|convergence|trade-?off", re.IGNORECASE)
YEAR = re.compile(r"^(?:19|20)\d\d$")
PLUS_MINUS = re.compile(r"(?:±|\+/-|\+-)\s*(\d+(?:\.\d+)?)")
INLINE_EQUATION = re.compile(r"\[Equation [^\]]*\]")
"""How the ingest marks an equation inside running text; its numbers are symbols and constants, not results."""
MANTISSA = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")


@dataclass(frozen=True)
class CellResult:
    """One numeric result cell of a results table."""

    table: Table
    row: int
    column: int
    row_label: str
    column_label: str
    text: str
    value: float
    tolerance: float
    ours: bool


@dataclass(frozen=True)
class TextResult:
    value: float
    text: str
    sentence: str
    section: str


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def table_number(table_id: str) -> str:
    return table_id.split("_", 1)[-1]


def method_name(title: str) -> str | None:
    """The method's short name when the title gives one ("ToolLLM: Facilitating ..." -> "ToolLLM")."""
    head = title.split(":", 1)[0].strip() if ":" in title else ""
    return head if 2 <= len(head) <= 30 and " " not in head.strip() else None


def is_ours(label: str, name: str | None) -> bool:
    if OURS.search(label):
        return True
    if not name:
        return False
    # "ToolLLM" names its model "ToolLLaMA": a shared 5-letter prefix counts.
    return any(w.lower().startswith(name.lower()[:5]) for w in re.findall(r"[\w-]+", label) if len(w) >= 4)


def is_results_table(table: Table) -> bool:
    """Not a table of set-up, data or examples, unless its caption also names the scores it reports ("The size
    of training and test sets ... F1 scores on the test set"). A table with an elided row ("· · ·", "...") shows
    the layout of some data (a data frame's first and last rows), not results."""
    if any(row and all(ELIDED_CELL.fullmatch(c.strip()) for c in row if c.strip()) and any(c.strip() for c in row)
           for row in table.rows):
        return False
    return not NOT_RESULTS_TABLE.search(table.caption) or bool(MEASURED_SCORE.search(table.caption))


def result_columns(table: Table) -> list[int]:
    """Columns holding results: not the row-label column, not a set-up column, at least one number."""
    columns = []
    for c, name in enumerate(table.header):
        if c == 0 or SETUP_COLUMN.search(name):
            continue
        if any(c < len(row) and cell_value(row[c]) is not None for row in table.rows):
            columns.append(c)
    return columns


def cell_value(text: str) -> tuple[float, float | None] | None:
    """(value, printed spread or None) of a result cell; a value printed with its interval ("224.80 [196.80
    284.20]") takes the interval's larger half-width as its spread. A code such as "1A" or "2B" (a case, a
    variant) names something and is no result."""
    if IDENTIFIER_CELL.match(text.strip()):
        return None
    return numbers.parse_value(text)


def printed_spread(text: str) -> float | None:
    """The ± the paper prints in a cell, in the value's unit ("2.1 ± 0.3 × 10⁻³" -> 0.0003)."""
    parse_value = getattr(numbers, "parse_value", None)  # the ingest's parser, when it reads spreads itself
    if parse_value is not None:
        parsed = parse_value(text)
        return parsed[1] if parsed else None
    spread = PLUS_MINUS.search(text.translate(MINUS_SIGNS))
    return float(spread.group(1)) if spread else None


def printed_unit(text: str, value: float) -> float:
    """One unit of the printed precision, in the value's unit ("3.2 × 10⁻⁴" -> 1e-5, "85.2%" -> 0.1)."""
    cleaned = " ".join(text.translate(MINUS_SIGNS).split())
    head = MANTISSA.match(cleaned)
    mantissa = float(head.group(0).replace(",", "")) if head and re.search(r"\d", head.group(0)) else value
    scale = abs(value / mantissa) if mantissa else 1.0
    return 10.0 ** -decimals_of(head.group(0) if head else cleaned) * (scale or 1.0)


def cell_tolerance(text: str, value: float, others: Sequence[float]) -> float:
    """The paper's own spread: its ± (or interval) if printed, else half the gap to the nearest other value of the
    column; at least one printed unit, at most MAX_RELATIVE_TOLERANCE of the value."""
    unit = printed_unit(text, value)
    ceiling = max(MAX_RELATIVE_TOLERANCE * abs(value), unit)
    parsed = cell_value(text)
    spread = parsed[1] if parsed else None
    if spread is not None:
        return float(f"{max(spread, unit):.6g}")
    gaps = [abs(value - o) for o in others if o != value]
    half_gap = min(gaps) / 2 if gaps else ceiling
    return float(f"{max(min(half_gap, ceiling), unit):.6g}")


def ours_rows(table: Table, name: str | None) -> set[int]:
    """Rows of the paper's own method: named so ("ours", "proposed", the title's method name), else the row with
    the most bold cells (papers bold the best result, usually theirs) when it has at least two."""
    named = {r for r, row in enumerate(table.rows) if row and is_ours(row_label(row), name)}  # any text cell
    if named:
        return named
    styles = getattr(table, "styles", None) or []
    bold = [sum("b" in s for s in row) for row in styles]
    best = max(range(len(bold)), key=bold.__getitem__, default=None)
    return {best} if best is not None and bold[best] >= 2 else set()


def label_of(table: Table, row: Sequence[str], first_result: int) -> str:
    """What names a row: its leading text cells before the first result column, set-up columns left out
    ("Ours", not "Ours 11M" when the next column is #Params)."""
    lead = [cell for c, cell in enumerate(row[:first_result])
            if cell and not (c and c < len(table.header) and SETUP_COLUMN.search(table.header[c]))]
    return row_label(lead) if lead else ""


def table_cells(table: Table, name: str | None) -> list[CellResult]:
    """The numeric result cells of a results table, the method's rows first."""
    if not is_results_table(table):
        return []
    ours = ours_rows(table, name)
    cells: list[CellResult] = []
    columns = result_columns(table)
    for c in columns:
        values = [(r, row[c], parsed[0]) for r, row in enumerate(table.rows)
                  if c < len(row) and (parsed := cell_value(row[c])) is not None]
        for r, text, value in values:
            label = label_of(table, table.rows[r], columns[0]).strip() or f"row {r + 1}"
            others = [v for rr, _, v in values if rr != r]
            cells.append(CellResult(table, r, c, label, table.header[c].strip() or f"column {c + 1}", text.strip(),
                                    value, cell_tolerance(text, value, others), r in ours))
    # Past the method's rows, what the paper stresses first: a summary row over all items ("μ", "Average"), its
    # bold (best) cells, then summary columns ("average", "overall"), then the rest in reading order; a large
    # table is cut at MAX_TABLE_LEAVES.
    styles = getattr(table, "styles", None) or []
    def stressed(cell: CellResult) -> bool:
        return cell.row < len(styles) and cell.column < len(styles[cell.row]) and "b" in styles[cell.row][cell.column]
    cells.sort(key=lambda cell: (not cell.ours, not SUMMARY_ROW.match(cell.row_label), not stressed(cell),
                                 not SUMMARY_COLUMN.search(cell.column_label), cell.row, cell.column))
    return cells[:MAX_TABLE_LEAVES]


def citations(bundle: Bundle, label: str, number: str) -> int:
    """How often the main text (not the appendix) cites "Table 2" / "Figure 3" / "Fig. 3"."""
    words = {"table": r"Tables?|Tab\.", "figure": r"Figures?|Figs?\."}[label]
    pattern = re.compile(rf"(?:{words})\s*{re.escape(number)}(?!\d)")
    return sum(len(pattern.findall(s.text)) for s in bundle.sections if not APPENDIX.search(s.title))


def appendix_page(bundle: Bundle) -> int | None:
    pages = [s.page for s in bundle.sections if APPENDIX.search(s.title)]
    return min(pages) if pages else None


def emphasis(bundle: Bundle, label: str, number: str, page: int) -> int:
    """Integer weight: 1 in the appendix, else 1 + the main text's citations (at most 4)."""
    start = appendix_page(bundle)
    if start is not None and page > start:
        return 1
    return 1 + min(citations(bundle, label, number), 4)


def text_results(bundle: Bundle, table_values: set[float]) -> list[TextResult]:
    """Decimal or percent numbers of results-like sections that are not set-up values, years or table repeats."""
    found: list[TextResult] = []
    for section in bundle.sections:
        if not RESULTS_SECTION.search(section.title) or APPENDIX.search(section.title):
            continue
        for sentence in sentences(section.text):
            if SETUP_SENTENCE.search(sentence):
                continue
            sentence = INLINE_EQUATION.sub("[equation]", sentence)
            for value, printed in numbers_in_sentence(sentence.replace("[equation]", " ")):
                if re.search(rf"§\s*{re.escape(printed)}", sentence):  # a section reference, not a result
                    continue
                if YEAR.match(printed) or not ("." in printed or "%" in printed) or value in table_values:
                    continue
                found.append(TextResult(value, printed, sentence, section.title))
    return found[:MAX_TEXT_LEAVES]


def claims(bundle: Bundle, taken: set[str]) -> list[tuple[str, str]]:
    """(section, sentence) comparative claims of the abstract, results and conclusion, not already a numeric leaf."""
    found: list[tuple[str, str]] = []
    for section in bundle.sections:
        if not RESULTS_SECTION.search(section.title) or APPENDIX.search(section.title):
            continue
        for sentence in sentences(section.text):
            if CLAIM.search(sentence) and AUTHORS_VOICE.search(sentence) and sentence not in taken \
                    and not INLINE_EQUATION.search(sentence) and 40 <= len(sentence) <= 400 \
                    and not SETUP_SENTENCE.search(sentence):
                found.append((section.title, sentence))
    # The abstract states what the authors consider their main results: those first.
    found.sort(key=lambda item: "abstract" not in item[0].lower())
    return found[:MAX_CLAIMS]


def result_figures(bundle: Bundle) -> list[Figure]:
    """Figures that show results (plots of metrics), not architecture diagrams or examples."""
    return [f for f in bundle.figures if not NOT_RESULT_FIGURE.search(f.caption)
            and (RESULT_FIGURE.search(f.caption) or citations_in_results(bundle, table_number(f.id)))]


def citations_in_results(bundle: Bundle, number: str) -> bool:
    pattern = re.compile(rf"(?:Figures?|Figs?\.)\s*{re.escape(number)}(?!\d)")
    return any(pattern.search(s.text) for s in bundle.sections
               if RESULTS_SECTION.search(s.title) and "abstract" not in s.title.lower())
