"""Import hooks: run a callback right before or right after a named module executes.

Why: the plugin must do nothing unless MiniMax M3 is actually loaded, yet its entry point runs in every vLLM
process long before any model module is imported. A meta-path finder that only reacts to a few module names
costs one dict lookup per import and lets the plugin patch exactly when (and only if) the M3 code appears.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

ModuleCallback = Callable[[ModuleType], None]


class _HookedLoader(importlib.abc.Loader):
    """Wraps a module's real loader; runs the `before` callback, the module body, then the `after` callback."""

    def __init__(self, loader: Any, before: ModuleCallback | None, after: ModuleCallback | None) -> None:
        self._loader = loader
        self._before = before
        self._after = after

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if self._before is not None:
            self._before(module)
        self._loader.exec_module(module)
        if self._after is not None:
            self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, ... of the real loader
        return getattr(self._loader, name)


class ImportHookFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that decorates the loaders of a fixed set of module names; inert for all others."""

    def __init__(self) -> None:
        self._before: dict[str, ModuleCallback] = {}
        self._after: dict[str, ModuleCallback] = {}
        self._resolving: set[str] = set()

    def add(self, name: str, *, before: ModuleCallback | None = None, after: ModuleCallback | None = None) -> None:
        if before is not None:
            self._before[name] = before
        if after is not None:
            self._after[name] = after

    def watches(self, name: str) -> bool:
        return name in self._before or name in self._after

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not self.watches(fullname) or fullname in self._resolving:
            return None
        self._resolving.add(fullname)  # let the other finders locate the real module
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._resolving.discard(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _HookedLoader(spec.loader, self._before.get(fullname), self._after.get(fullname))
        return spec


def installed_finder() -> ImportHookFinder:
    """The process-wide finder, installed at the front of sys.meta_path on first use (idempotent)."""
    for finder in sys.meta_path:
        if isinstance(finder, ImportHookFinder):
            return finder
    finder = ImportHookFinder()
    sys.meta_path.insert(0, finder)
    return finder


def on_import(name: str, *, before: ModuleCallback | None = None, after: ModuleCallback | None = None) -> None:
    """Run `after(module)` once `name` has executed (now, if it already has); `before` only if not yet imported."""
    module = sys.modules.get(name)
    if module is not None:
        if after is not None:
            after(module)
        return
    installed_finder().add(name, before=before, after=after)
