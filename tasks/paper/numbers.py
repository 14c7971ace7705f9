"""Numbers as papers print them: parsing one cell, and finding every reported number in running text."""
from __future__ import annotations

import re

MINUS_SIGNS = str.maketrans({"−": "-", "–": "-", "‐": "-", "—": "-"})
CELL_NUMBER = re.compile(r"^([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?)\s*(%)?\s*(?:(?:±|\+/-|\+-)\s*[\d.]+%?)?[*†‡]*$")
TEXT_NUMBER = re.compile(r"(?<![\w.\-])([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)(\s?%|[x×](?![A-Za-z]))?(?![\w]|\.\d)")
NOT_RESULTS = re.compile(
    r"(?:Table|Tab\.|Figure|Fig\.|Section|Sec\.|Eq\.|Equation|Appendix|Algorithm|Alg\.|Step|Line|Chapter)\s*$",
    re.IGNORECASE,
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")


def parse_number(text: str) -> float | None:
    """The value of a table cell such as "1.50", "−0.3", "12,000", "85.2%", "0.25 ± 0.01"; None if not a number."""
    cleaned = " ".join(text.translate(MINUS_SIGNS).split())
    match = CELL_NUMBER.match(cleaned)
    if not match or not re.search(r"\d", match.group(1) or ""):
        return None
    return float(match.group(1).replace(",", ""))


def decimals_of(text: str) -> int:
    """Digits after the decimal point as printed ("0.250" -> 3); the printed precision of a result."""
    match = re.search(r"\.(\d+)", text.translate(MINUS_SIGNS))
    return len(match.group(1)) if match else 0


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(" ".join(text.split())) if s.strip()]


def numbers_in_sentence(sentence: str) -> list[tuple[float, str]]:
    """(value, printed text) of each reported number, skipping labels like "Table 1" or citations "[3]"."""
    found: list[tuple[float, str]] = []
    for match in TEXT_NUMBER.finditer(sentence.translate(MINUS_SIGNS)):
        before = sentence[: match.start()]
        if NOT_RESULTS.search(before) or before.rstrip().endswith(("[", ",")) and "[" in before[-12:]:
            continue
        printed = match.group(0).strip()
        found.append((float(match.group(1).replace(",", "")), printed))
    return found
