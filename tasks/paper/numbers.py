"""Numbers as papers print them: parsing one cell (value, ± spread, scientific notation), and finding every
reported number in running text."""
from __future__ import annotations

import re

MINUS_SIGNS = str.maketrans({"−": "-", "–": "-", "‐": "-", "—": "-"})
SUPERSCRIPTS = str.maketrans("0123456789-+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺")
SUBSCRIPTS = str.maketrans("0123456789-+", "₀₁₂₃₄₅₆₇₈₉₋₊")
FROM_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?"
_EXP = r"(?:\s*(?:[x×·⋅*]|\\times)\s*10\s*(?:\^\s*\(?\s*[-+]?\d+\)?|[⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)|[eE][-+]?\d+|[eE][⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)"
_SPREAD = r"[(\[]?\s*(?:±|\+/-|\+-)\s*(" + _NUM + r")(" + _EXP + r")?\s*%?\s*[)\]]?"
"""The ± part of a cell, bare or in brackets ("0.25 ± 0.01", "99.7 (± 0.1)")."""
_UNIT = r"(?:\s?[A-Za-zµμΩ°]{1,3}[²³⁻¹]{0,2}(?:/[A-Za-z]{1,3}[²³⁻¹]{0,2})?)?"
"""A short unit after the number ("60 mV²", "3.0 nA", "12 ms"); longer words make it text, not a value."""
CELL_NUMBER = re.compile(
    r"^[(\[]?([-+]?" + _NUM + r")(" + _EXP + r")?\s*(%)?\s*(?:" + _SPREAD + r")?" + _UNIT
    + r"[)\]]?\s*[*†‡§¶⋆∗]*$"
)
INTERVAL_CELL = re.compile(r"^\s*([-+]?\d[\d,]*(?:\.\d+)?)\s*[\[(]\s*([-+]?\d[\d,]*(?:\.\d+)?)(?:\s*[,;–-]\s*|\s+)"
                           r"([-+]?\d[\d,]*(?:\.\d+)?)\s*[\])]\s*$")
"""A value with its interval, "224.80 [196.80 284.20]" or "54 (32–72)" (a median or estimate and its interval);
the two bounds are set apart ("0.751 (0.002)" is no interval from 0.00 to 2)."""
WITH_SPREAD = re.compile(r"^([-+]?\d[\d,]*(?:\.\d+)?)\s*\(\s*(\d*\.\d+)\s*\)$")
"""A mean with its standard deviation in parentheses, in small print after it: "0.751 (0.002)"."""
SPREAD_ONLY = re.compile(r"^" + _SPREAD + r"$")
BARE_POWER = re.compile(r"^([-+]?)10([⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)$")
TEXT_POWER = re.compile(r"(?<![\w.\-×·])([-+]?)10([⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)(?![\w])")
TEXT_NUMBER = re.compile(
    r"(?<![\w.\-])([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)(" + _EXP + r")?"
    r"(\s?%|[x×](?![A-Za-z\d])|k(?![A-Za-z\d]))?(?![\w]|\.\d)"
)
"""A number in running text, with its printed power of ten, "%", "×" or thousands "k" ("21.4k lines of code": the
value as printed, 21.4, as `parse_value` reads a "21.4k" cell)."""
DOI = re.compile(r"\b10\.\d{4,9}/\S+")
NOT_RESULTS = re.compile(
    r"(?:Table|Tab\.|Figure|Fig\.|Section|Sec\.|Eq\.|Equation|Appendix|Algorithm|Alg\.|Step|Line|Chapter)\s*$",
    re.IGNORECASE,
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")


def _exponent(text: str | None) -> int:
    """The power of ten of a printed "× 10⁻⁴", "·10^-4" or "e-4" (0 when there is none)."""
    if not text:
        return 0
    digits = re.search(r"([-+]?\d+)\)?\s*$", text.translate(FROM_SUPERSCRIPT).translate(MINUS_SIGNS).replace(" ", ""))
    return int(digits.group(1)) if digits else 0


MAX_EXPONENT = 300
"""Floats end near 10³⁰⁸: a larger "exponent" is something else set as superscript digits."""


def _value(number: str, exponent: str | None) -> float:
    return float(number.replace(",", "")) * 10.0 ** _exponent(exponent)


COUNT_WITH_SHARE = re.compile(r"^(\d{1,3}(?:,\d{3})*|\d+)\s*\(\s*\d+(?:\.\d+)?\s*%\s*\)$")
"""A count printed with its percentage of the total in parentheses: "61 (49.59%)", "0 (0.0%)"."""
WITH_DIFFERENCE = re.compile(r"^([-+]?\d[\d,]*(?:\.\d+)?)\s*(%)?\s*\(\s*[-+]\d+(?:\.\d+)?\s*%?\s*\)\s*[*†‡§¶⋆∗]*$")
"""A value printed with its signed difference to a baseline: "90.75 (+1.15)", "87.15 (-2.45)" (no spread)."""


def parse_value(text: str) -> tuple[float, float | None] | None:
    """(value, printed ± spread or None) of a cell such as "58.9 ± 1.9%", "3.2 × 10⁻⁴", "1e-3", "10⁴", "−0.3",
    "90.75 (+1.15)" (a value and its difference to a baseline);
    a value printed with its interval ("224.80 [196.80 284.20]") takes the interval's larger half-width as its
    spread. None if the cell is not a number."""
    cleaned = " ".join(text.translate(MINUS_SIGNS).split())
    difference = WITH_DIFFERENCE.match(cleaned)
    if difference:  # the signed number in brackets compares with a baseline; the cell's value comes first
        return float(difference.group(1).replace(",", "")), None
    interval = INTERVAL_CELL.match(cleaned)
    if interval:
        value, low, high = (float(g.replace(",", "")) for g in interval.groups())
        return (value, max(value - low, high - value)) if low <= value <= high else None
    mean_sd = WITH_SPREAD.match(cleaned)
    if mean_sd:  # a decimal in brackets after a value: its spread (a count with a rank is not matched)
        return float(mean_sd.group(1).replace(",", "")), float(mean_sd.group(2))
    share = COUNT_WITH_SHARE.match(cleaned)
    if share:  # "61 (49.59%)": a count with its share of the total; the count is the cell's value
        return float(share.group(1).replace(",", "")), None
    power = BARE_POWER.match(cleaned)
    if power:
        return float(f"{power.group(1)}1e{power.group(2).translate(FROM_SUPERSCRIPT)}"), None
    match = CELL_NUMBER.match(cleaned)
    if not match or not re.search(r"\d", match.group(1) or ""):
        return None
    # "(2.1 ± 0.3) × 10⁻³" is printed "2.1 ± 0.3 × 10⁻³" too: the power after the spread applies to both.
    if abs(_exponent(match.group(2) or match.group(5))) > MAX_EXPONENT:
        return None  # no printed power of ten: digits set small after the value (a spread in small print)
    value = _value(match.group(1), match.group(2) or match.group(5))
    spread = _value(match.group(4), match.group(5)) if match.group(4) and re.search(r"\d", match.group(4)) else None
    return value, spread


def is_spread(text: str) -> bool:
    """A cell that holds only a ± spread ("(± 0.1)", "±1.9%"): the second line of a value printed on two."""
    return bool(SPREAD_ONLY.match(" ".join(text.translate(MINUS_SIGNS).split())))


def parse_number(text: str) -> float | None:
    """The value of a table cell such as "1.50", "−0.3", "12,000", "85.2%", "0.25 ± 0.01"; None if not a number."""
    parsed = parse_value(text)
    return parsed[0] if parsed else None


def decimals_of(text: str) -> int:
    """Digits after the decimal point as printed ("0.250" -> 3); the printed precision of a result."""
    match = re.search(r"\.(\d+)", text.translate(MINUS_SIGNS))
    return len(match.group(1)) if match else 0


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def numbers_in_sentence(sentence: str) -> list[tuple[float, str]]:
    """(value, printed text) of each reported number, skipping labels like "Table 1" or citations "[3]"."""
    found: list[tuple[float, str]] = []
    plain = DOI.sub(" ", sentence.translate(MINUS_SIGNS))  # "10.5281/zenodo.3160540" is an identifier
    for match in TEXT_NUMBER.finditer(plain):
        before = plain[: match.start()]
        if NOT_RESULTS.search(before) or before.rstrip().endswith(("[", ",")) and "[" in before[-12:]:
            continue
        printed = match.group(0).strip()
        found.append((_value(match.group(1), match.group(2)), printed))
    for match in TEXT_POWER.finditer(plain):  # "10⁴ steps": a power of ten printed alone
        found.append((float(f"{match.group(1)}1e{match.group(2).translate(FROM_SUPERSCRIPT)}"), match.group(0)))
    return found
