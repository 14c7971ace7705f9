def slugify(title: str) -> str:
    """Turn a title into a URL slug (see test_slugify.py for the exact rules)."""
    raise NotImplementedError
