"""Import hooks and the plugin entry point, on throwaway modules (no vLLM needed)."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from serving.plugin import hooks


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"m3lab_fake_{tmp_path.name.replace('-', '_')}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "target.py").write_text("VALUE = 1\ndef select():\n    return 'vllm'\n")
    (pkg / "other.py").write_text("VALUE = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for mod in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[mod]


def test_after_hook_patches_only_the_watched_module(fake_package: str) -> None:
    seen: list[str] = []

    def patch(module) -> None:
        seen.append(module.__name__)
        module.select = lambda: "ours"

    hooks.on_import(f"{fake_package}.target", after=patch)
    other = importlib.import_module(f"{fake_package}.other")
    assert seen == [] and other.VALUE == 2
    target = importlib.import_module(f"{fake_package}.target")
    assert seen == [f"{fake_package}.target"]
    assert target.select() == "ours" and target.VALUE == 1


def test_before_hook_runs_before_the_body(fake_package: str) -> None:
    order: list[str] = []
    hooks.on_import(f"{fake_package}.target", before=lambda m: order.append("before"),
                    after=lambda m: order.append(f"after:{m.VALUE}"))
    importlib.import_module(f"{fake_package}.target")
    assert order == ["before", "after:1"]


def test_already_imported_module_is_patched_at_once(fake_package: str) -> None:
    target = importlib.import_module(f"{fake_package}.target")
    hooks.on_import(f"{fake_package}.target", after=lambda m: setattr(m, "VALUE", 42))
    assert target.VALUE == 42


def test_single_finder_however_often_installed() -> None:
    assert hooks.installed_finder() is hooks.installed_finder()
    assert sum(isinstance(f, hooks.ImportHookFinder) for f in sys.meta_path) == 1


def test_register_is_cheap_idempotent_and_imports_nothing_heavy() -> None:
    """In a fresh interpreter: register() twice imports neither vLLM nor torch and installs one finder."""
    code = (
        "import sys, serving.plugin as p; p.register(); p.register();"
        "from serving.plugin.hooks import ImportHookFinder;"
        "n = sum(isinstance(f, ImportHookFinder) for f in sys.meta_path);"
        "heavy = [m for m in ('vllm', 'torch', 'kernels') if m in sys.modules];"
        "print(n, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "1 []"
