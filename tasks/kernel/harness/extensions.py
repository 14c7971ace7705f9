"""The compile stage's machinery, inside a worker: C++/CUDA extensions of a candidate (`load_inline`, `load`) are
built into a private folder, looked up first in a read-only cache keyed by a hash of everything that decides the
binary (sources, flags, torch version, CUDA arch), and reported (seconds, cached, the compiler's first errors and
its warnings). Installed by the worker before the candidate module is imported; harness code, never the candidate's.

Why wrap the two public entry points rather than parse the candidate: the sources are often built at import time
(f-strings, file reads), so only the call itself knows them. A candidate that reaches torch's private builders
directly still compiles (in its own TORCH_EXTENSIONS_DIR), just without our cache and report."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KEY_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
LIB_EXT = ".so"
MAX_ERRORS = 5
MAX_WARNINGS = 10
FAILED = "failed.json"
"""A failed build's diagnostics, cached like a library: the same failing sources are not rebuilt in a run."""
MAX_FAILURE_BYTES = 64 << 10
_IGNORED_ARGS = {"build_directory", "verbose", "keep_intermediates"}
# gcc/clang `file:line[:col]: [fatal ]error: msg`, nvcc `file(line): error[ #N-D]: msg`, and the linker.
_GCC = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:\d+:)?\s*(?:fatal\s+)?(?P<kind>error|warning):\s*(?P<msg>.*)$")
_NVCC = re.compile(r"^(?P<file>[^\s(][^(]*)\((?P<line>\d+)\):\s*(?P<kind>error|warning)(?:\s*#[\w-]+)?:\s*(?P<msg>.*)$")
_LINKER = re.compile(r"(undefined reference to .*|ld(?:\.\w+)?: .*error.*|collect2: error: .*|nvcc fatal\s*: .*)$")


@dataclass
class Diagnostic:
    file: str
    line: int
    message: str


@dataclass
class ExtensionBuild:
    name: str
    key: str
    cached: bool
    seconds: float
    ok: bool


@dataclass
class CompileReport:
    extensions: list[ExtensionBuild] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    log_excerpt: str = ""
    """The compiler output around the first error (trimmed), for the producer."""

    def to_json(self) -> dict[str, Any]:
        built = self.extensions
        return {"seconds": round(sum(e.seconds for e in built), 3),
                "cached": bool(built) and all(e.cached for e in built),
                "extensions": [asdict(e) for e in built], "errors": [asdict(d) for d in self.errors],
                "warnings": [asdict(d) for d in self.warnings], "log_excerpt": self.log_excerpt}


def arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST for the visible card (e.g. "9.0"), or "" on CPU."""
    import torch

    if not torch.cuda.is_available():
        return ""
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def parse_diagnostics(output: str) -> tuple[list[Diagnostic], list[Diagnostic], str]:
    """(errors, warnings, excerpt) from a compiler/ninja log; file names are reduced to their base name."""
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    first_error_at = -1
    lines = output.splitlines()
    for i, raw in enumerate(lines):
        line = raw.strip()
        m = _GCC.match(line) or _NVCC.match(line)
        if m:
            d = Diagnostic(os.path.basename(m["file"].strip()), int(m["line"]), m["msg"].strip()[:300])
            if m["kind"] == "error":
                errors.append(d)
                first_error_at = i if first_error_at < 0 else first_error_at
            else:
                warnings.append(d)
            continue
        lm = _LINKER.search(line)
        if lm:
            errors.append(Diagnostic("(link)", 0, lm.group(1)[:300]))
            first_error_at = i if first_error_at < 0 else first_error_at
    excerpt = ""
    if first_error_at >= 0:
        excerpt = "\n".join(lines[first_error_at:first_error_at + 12])[:2000]
    elif output.strip():
        excerpt = "\n".join(lines[-12:])[-2000:]  # no recognisable error line: the tail says what happened
    return _dedupe(errors)[:MAX_ERRORS], _dedupe(warnings)[:MAX_WARNINGS], excerpt


def _dedupe(items: list[Diagnostic]) -> list[Diagnostic]:
    seen, out = set(), []
    for d in items:
        if (d.file, d.line, d.message) not in seen:
            seen.add((d.file, d.line, d.message))
            out.append(d)
    return out


def _source_text(value: Any) -> Any:
    """`load` names source files: their contents (not their paths) decide the binary."""
    paths = [value] if isinstance(value, (str, os.PathLike)) else list(value or [])
    return [Path(p).read_text(errors="replace") for p in paths]


def build_key(kind: str, bound: dict[str, Any]) -> str:
    import torch  # (lazily: the host imports this module for its constants only)

    parts = {k: (_source_text(v) if (kind == "load" and k == "sources") else v)
             for k, v in sorted(bound.items()) if k not in _IGNORED_ARGS}
    parts.update(kind=kind, torch=torch.__version__, cuda=torch.version.cuda or "",
                 arch=os.environ.get("TORCH_CUDA_ARCH_LIST", ""), python=sys.version.split()[0])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class _CapturedFd1:
    """torch's verbose build writes ninja/compiler output to fd 1: send it to a file for the duration."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _CapturedFd1:
        sys.stdout.flush()
        self.saved = os.dup(1)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(self.fd, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        os.close(self.fd)

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except OSError:
            return ""


class CompileFailed(RuntimeError):
    """An extension of the candidate did not build; the report holds the compiler's errors."""


class ExtensionHooks:
    """Wraps torch.utils.cpp_extension.load_inline / load for one worker process."""

    def __init__(self, build_root: Path, cache_dirs: list[Path]) -> None:
        self.build_root = build_root
        self.cache_dirs = cache_dirs
        self.report = CompileReport()

    def install(self) -> None:
        from torch.utils import cpp_extension as ce

        for kind in ("load_inline", "load"):
            original = getattr(ce, kind)
            setattr(ce, kind, self._wrap(kind, original))

    def _cached_lib(self, key: str, name: str) -> Path | None:
        for root in [*self.cache_dirs, self.build_root]:
            lib = root / key / f"{name}{LIB_EXT}"
            if lib.is_file() and (root / key / "complete").is_file():
                return lib
        return None

    def _cached_failure(self, key: str) -> dict[str, Any] | None:
        for root in self.cache_dirs:
            path = root / key / FAILED
            if path.is_file():
                try:
                    data = json.loads(path.read_text()[:MAX_FAILURE_BYTES])
                    return data if isinstance(data, dict) else None
                except ValueError:
                    return None
        return None

    def _record_failure(self, name: str, key: str, start: float, failure: dict[str, Any], cached: bool) -> None:
        errors = [Diagnostic(str(d.get("file")), int(d.get("line") or 0), str(d.get("message"))[:300])
                  for d in failure.get("errors", [])[:MAX_ERRORS]] or [Diagnostic("(build)", 0, "build failed")]
        self.report.errors.extend(errors)
        self.report.warnings.extend(Diagnostic(str(d.get("file")), int(d.get("line") or 0), str(d.get("message")))
                                    for d in failure.get("warnings", [])[:MAX_WARNINGS])
        self.report.log_excerpt = str(failure.get("log_excerpt", ""))[:2000]
        self.report.extensions.append(ExtensionBuild(name, key, cached, round(time.monotonic() - start, 3), False))
        raise CompileFailed(f"extension {name!r} did not build: {errors[0].file}:{errors[0].line}: "
                            f"{errors[0].message}")

    def _wrap(self, kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(original)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            params = dict(bound.arguments)
            name = str(params["name"])
            key = build_key(kind, params)
            start = time.monotonic()
            failed = self._cached_failure(key)
            if failed is not None:  # the same sources failed before in this run: the same errors, no rebuild
                self._record_failure(name, key, start, failed, cached=True)
            lib = self._cached_lib(key, name) if NAME_RE.match(name) else None
            if lib is not None:
                from torch.utils.cpp_extension import _import_module_from_library

                module = _import_module_from_library(name, str(lib.parent), params.get("is_python_module", True))
                self.report.extensions.append(ExtensionBuild(name, key, True, round(time.monotonic() - start, 3), True))
                return module
            return self._build(kind, original, params, name, key, start)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        return wrapper

    def _build(self, kind: str, original: Callable[..., Any], params: dict[str, Any], name: str, key: str,
               start: float) -> Any:
        out_dir = self.build_root / key
        out_dir.mkdir(parents=True, exist_ok=True)
        params.update(build_directory=str(out_dir), verbose=True)
        log = _CapturedFd1(Path(tempfile.mkstemp(prefix="build-", suffix=".log", dir=out_dir)[1]))
        try:
            with log:
                module = original(**params)
        except Exception as exc:
            text = log.text() + "\n" + str(exc)
            errors, warnings, excerpt = parse_diagnostics(text)
            failure = {"errors": [asdict(d) for d in errors], "warnings": [asdict(d) for d in warnings],
                       "log_excerpt": excerpt}
            if errors:  # the compiler's own verdict on these sources: cached (not a missing tool, not a timeout)
                (out_dir / FAILED).write_text(json.dumps(failure))
            else:
                failure["errors"] = [asdict(Diagnostic("(build)", 0, str(exc).splitlines()[0][:300] if str(exc)
                                                       else type(exc).__name__))]
            self._record_failure(name, key, start, failure, cached=False)
        _, warnings, _ = parse_diagnostics(log.text())
        self.report.warnings.extend(warnings)
        (out_dir / "complete").write_text(key)
        self.report.extensions.append(ExtensionBuild(name, key, False, round(time.monotonic() - start, 3), True))
        return module


def uses_extensions(source: str, candidate_dir: Path) -> bool:
    """Does the candidate build C++/CUDA? (then the compile stage runs before anything else)"""
    return "cpp_extension" in source or any(p.suffix in NATIVE_SUFFIXES for p in candidate_dir.iterdir())


NATIVE_SUFFIXES = {".cu", ".cuh", ".cpp", ".cc", ".cxx", ".h", ".hpp"}
