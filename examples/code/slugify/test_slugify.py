from slugify import slugify


def test_lowercase_and_hyphens():
    assert slugify("Hello World") == "hello-world"


def test_punctuation_is_dropped():
    assert slugify("Sparse Attention, Explained!") == "sparse-attention-explained"


def test_runs_of_separators_collapse_and_ends_are_trimmed():
    assert slugify("  MSA -- 128K   context  ") == "msa-128k-context"


def test_empty():
    assert slugify("!!!") == ""
