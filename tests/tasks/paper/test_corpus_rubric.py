"""The deterministic rubric on the real-paper corpus (tests/tasks/paper/corpus/, 24 CC BY papers): result
leaves for every results table the ingest found, none from parameter / data / overview tables, equations or set-up
columns; every leaf within PaperBench's schema. Which tables hold results was decided by hand from each paper."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.paper_ingest_bench import corpus_pdfs
from tasks.paper.ingest import ingest_pdf
from tasks.paper.numbers import parse_number
from tasks.paper.rubric import RubricNode, parse_rubric
from tasks.paper.rubric_gen import fallback_rubric
from tasks.paper.rubric_results import SETUP_COLUMN

CORPUS = Path(__file__).parent / "corpus"
# Hand-checked from the papers: tables reporting results, and tables of parameters, data or set-up.
RESULTS_TABLES = {
    "essential_genes": {"1", "2", "3"}, "food_chain_chaos": set(), "graph_ordering": {"2", "3"},
    "insect_phenology": {"2", "3", "4"}, "label_smoothing": {"2", "3", "4"}, "meta_learning": {"1", "2"},
    "mobile_backup": set(), "neural_pde": {"2"}, "pomdp_teaching": {"6", "7", "8", "9"},
    "retinal_mosaics": {"1"}, "stdp_homeostasis": set(), "working_memory": {"3", "5"},
    "phishing_shap": {"2", "3", "4"}, "pitch_spiral_ismir": {"2"},
    "sw_quality_models": {"11", "12", "13", "14", "15", "16"},
    "multilingual_ner_acl": {"2", "3", "4"}, "numeracy_literacy_emnlp": {"3", "4", "6"},
    "doc_embeddings_cosine_acl": {"1", "3", "4"}, "polyp_segmentation_ieee": {"3", "5"},
    "fewshot_hematopoiesis_midl": {"1", "3"}, "geodesic_label_smoothing_midl": {"1", "2", "3"}, "compcertoc_pldi": set(),
    "autogluon_timeseries_automl": {"3", "4", "5", "9", "10", "11"}, "cubical_agda_cpp": set(),
}
SETUP_TABLES = {
    "food_chain_chaos": {"1"}, "graph_ordering": {"1"}, "insect_phenology": {"1"}, "label_smoothing": {"1", "5"},
    "mobile_backup": {"2"}, "neural_pde": {"1"}, "pomdp_teaching": {"2", "4", "5"}, "stdp_homeostasis": {"1", "2"},
    "working_memory": {"1", "2"}, "phishing_shap": {"1"}, "pitch_spiral_ismir": {"1"},
    "sw_quality_models": {str(n) for n in range(1, 11)},
    # An example sentence's labels; example sentences and qualitative examples; hyper-parameters; datasets.
    "multilingual_ner_acl": {"1"}, "numeracy_literacy_emnlp": {"1", "2", "5"}, "doc_embeddings_cosine_acl": {"2"},
    "polyp_segmentation_ieee": {"1", "2", "4"},
    # Dataset statistics; a compiler's passes and their simulation conventions.
    "fewshot_hematopoiesis_midl": {"2"}, "compcertoc_pldi": {"1"},
    # Example data frames, hyper-parameters, library versions, dataset statistics.
    "autogluon_timeseries_automl": {"1", "2", "6", "7", "8"},
}


def test_the_hand_classification_covers_the_corpus() -> None:
    names = set(corpus_pdfs())
    assert names == set(RESULTS_TABLES) and len(names) >= 12
    for name in names:
        expected = {t["number"] for t in json.loads((CORPUS / f"{name}.expect.json").read_text())["tables"]}
        assert RESULTS_TABLES[name] | SETUP_TABLES.get(name, set()) <= expected, name


def _table_of(leaf: RubricNode) -> str | None:
    match = re.match(r"results/table_(\d+)/", leaf.id)
    return match.group(1) if match else None


@pytest.mark.parametrize("name", sorted(RESULTS_TABLES))
def test_corpus_rubric_has_result_leaves_for_results_tables_only(name: str, tmp_path: Path) -> None:
    bundle = ingest_pdf(corpus_pdfs()[name], tmp_path / "bundle")
    rubric = fallback_rubric(bundle)
    parse_rubric(json.loads(json.dumps(rubric.to_json())))
    leaves = list(rubric.leaves())
    found = {t.id.split("_", 1)[1] for t in bundle.tables}
    with_leaves = {_table_of(leaf) for leaf in leaves if leaf.task_category == "Result Analysis"} - {None}
    missing = (RESULTS_TABLES[name] & found) - with_leaves
    assert not missing, f"results tables without result leaves: {sorted(missing)}"
    assert not with_leaves & SETUP_TABLES.get(name, set()), "leaves from a parameter / data / overview table"
    # No leaf made from an equation: no equation id, no "implements equation (...)", no number taken from an
    # equation the ingest marked inside the text.
    assert not [leaf.id for leaf in leaves if re.search(r"\beq_|implements equation|\[Equation eq_", leaf.id
                                                        + leaf.requirements, re.I)]
    columns = [re.search(r"column '([^']*)'", leaf.requirements) for leaf in leaves if _table_of(leaf)]
    assert not [m.group(1) for m in columns if m and SETUP_COLUMN.search(m.group(1))]
    # Tolerances: the printed ± or interval, else at most 5% (or one printed unit): never wider.
    printed_spread = re.compile(r"±|[\[(]\s*[-\d.]+\s*[–,; -]\s*[-\d.]+\s*[\])]")
    wide = [leaf.id for leaf in leaves if "metric" in leaf.extra and not printed_spread.search(leaf.requirements)
            # (1e-9 of slack: the rubric prints 6 digits, and 5 % of 38.41 is 1.92049... in binary floats)
            and not 0 < leaf.extra["tolerance"] <= max(0.05 * abs(leaf.extra["expected"]), 1.0) * (1 + 1e-9)]
    assert not wide, f"tolerance wider than the paper's own spread: {wide[:3]}"
    # The headline results (hand-listed in the expectation file) are each a leaf's number or quoted by a leaf.
    headline = json.loads((CORPUS / f"{name}.expect.json").read_text())["headline"]
    values = {leaf.extra["expected"] for leaf in leaves if "metric" in leaf.extra}
    text = " ".join(leaf.requirements for leaf in leaves)
    missed = [h for h in headline if parse_number(h) not in values
              and not re.search(rf"(?<![\d.]){re.escape(h)}(?!\d)", text)]
    assert not missed, f"headline results in no rubric leaf: {missed}"
