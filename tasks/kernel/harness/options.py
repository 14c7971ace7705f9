"""The options of one kernel evaluation, declared once, and the layout of the evaluation folder.

The host (tasks/kernel/runner.py) builds an `EvalOptions`, writes it as `options.json` into the evaluation folder,
and the evaluator inside the sandbox loads it back with `load_options`. The file sits in a folder the sandbox can
write, so it is data: the loader accepts only known keys with values of the declared type and range, and the host
never reads it back (it keeps its own object). Standard library only: this module runs on both sides."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

# The evaluation folder, relative to its root (the evaluator's working directory).
OPTIONS_FILE = "options.json"
TARGET_FILE = "target.py"
CANDIDATE_FILE = "cand/candidate.py"
NONCE_FILE = "nonce"
LOG_DIR = "logs"
EXT_BUILD = "ext-build"
_MAX_OPTIONS_BYTES = 64 << 10


class OptionsError(ValueError):
    """options.json is missing, not JSON, or holds an unknown key or a value of the wrong type or range."""


def _num(default: float | int | None, lo: float, *, whole: bool = False, nullable: bool = False) -> Any:
    return field(default=default, metadata={"lo": lo, "whole": whole, "nullable": nullable})


def _choice(default: str, *choices: str) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class EvalOptions:
    """Every setting of one evaluation. Bounds and choices sit next to each field (checked by `from_json`)."""

    device: Literal["cpu", "cuda"] = _choice("cpu", "cpu", "cuda")
    isolation: Literal["sandbox", "subprocess"] = _choice("sandbox", "sandbox", "subprocess")
    """`sandbox`: a fresh sandbox through sandboxes.open_sandbox; `subprocess`: the host's python (tests, GPU hosts
    without a GPU-enabled sandbox). The evaluator/worker split and the nonce apply in both."""
    sandbox_backend: str = "auto"
    static: bool = True
    """Reject on static findings (False: report them as warnings; tests of the dynamic layer)."""
    timing: bool = True
    warmup: int = _num(3, 0, whole=True)
    iters: int = _num(20, 1, whole=True)
    """Timed calls per model per timing shape."""
    threads: int = _num(1, 1, whole=True)
    timeout_s: float = _num(1800.0, 1)
    drop_privileges: bool = True
    """When the evaluator runs as root, run the candidate worker as uid nobody (no signals/ptrace on the others)."""
    call_timeout_s: float = _num(120.0, 1)
    """Longest single call of the candidate (one check, one timed call) before it is killed."""
    start_timeout_s: float = _num(300.0, 1)
    """Longest start of a worker (imports and the candidate's module body) before it is killed."""
    memory_mb: int = _num(8192, 64, whole=True)
    disk_mb: int = _num(2048, 1, whole=True)
    """Disk quota of the evaluation folder (the candidate's logs and files): over it, the evaluation fails and the
    folder is emptied."""
    compile_timeout_s: float = _num(300.0, 1)
    """Time limit of the compile stage (the candidate's C++/CUDA extensions), added to `timeout_s`."""
    ext_cache: Path | None = None
    """Folder of finished extension builds shared by the evaluations of a run (keyed by a hash of sources, flags,
    torch version and CUDA arch); None keeps builds inside the one evaluation. On the host the run's cache root;
    in options.json the candidate's read-only part of it as the evaluator sees it."""
    sanitize: bool = False
    """compute-sanitizer memcheck + racecheck on a small shape (CUDA)."""
    sanitize_above: float | None = _num(None, 0, nullable=True)
    """Sanitize when the candidate is accepted faster than this (the run's best so far)."""
    sanitize_timeout_s: float = _num(600.0, 1)
    warm: bool = False
    """Subprocess isolation: evaluate in a long-lived evaluator per target and GPU whose two reference workers stay
    started across evaluations (tasks/kernel/warm.py); the candidate still gets fresh workers, a fresh seed, and
    the references are re-timed. A sandboxed evaluation always starts fresh. `m3lab optimize` turns it on by
    default with subprocess isolation (`--no-warm`: off)."""
    prestart: bool = True
    """Warm evaluators: while this evaluation runs, start the next candidate worker (python, torch, the device
    initialised, no candidate code; uid nobody when the evaluator is root), so the next candidate is handed to a
    ready process. Each pre-started worker serves one candidate and is then discarded."""

    @property
    def total_timeout_s(self) -> float:
        return self.timeout_s + self.compile_timeout_s + (1200.0 if self.sanitize or self.sanitize_above is not None
                                                          else 0.0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ext_cache"] = str(self.ext_cache) if self.ext_cache is not None else None
        return data

    @classmethod
    def from_json(cls, data: Any) -> EvalOptions:
        """Validated: unknown keys, wrong types, out-of-range or non-finite numbers raise OptionsError (all
        reasons at once); missing keys take their defaults."""
        if not isinstance(data, dict):
            raise OptionsError(f"options must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = [f"unknown option {k!r}" for k in data if k not in known]
        if unknown:
            raise OptionsError("; ".join(unknown))
        cache = data.get("ext_cache")
        if cache is not None and not (isinstance(cache, str) and cache.startswith("/") and "\0" not in cache):
            raise OptionsError(f"ext_cache: must be an absolute path or null, not {cache!r}")
        return cls(**{**data, "ext_cache": Path(cache) if cache is not None else None})

    def __post_init__(self) -> None:
        problems = [f"{f.name}: {p}" for f in fields(self) if (p := _check(f, getattr(self, f.name)))]
        if problems:
            raise OptionsError("; ".join(problems))


def _check(f: Any, value: Any) -> str | None:
    """What is wrong with `value` for field `f`, or None."""
    meta, default = f.metadata, f.default
    if "choices" in meta:
        return None if value in meta["choices"] else f"must be one of {list(meta['choices'])}, not {value!r}"
    if "lo" in meta:
        if value is None:
            return None if meta["nullable"] else "must be a number, not null"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (meta["whole"] and
                                                                              not isinstance(value, int)):
            return f"must be {'an integer' if meta['whole'] else 'a number'}, not {value!r}"
        if not math.isfinite(value) or value < meta["lo"]:
            return f"must be finite and at least {meta['lo']}, not {value!r}"
        return None
    if f.name == "ext_cache":
        return None if value is None or isinstance(value, Path) else f"must be a path or None, not {value!r}"
    return None if type(value) is type(default) else f"must be {type(default).__name__}, not {value!r}"


def write_options(eval_dir: Path, opts: EvalOptions, ext_cache_inside: str | None) -> None:
    """options.json for the evaluator: the options, with the compile cache as the evaluator will see it."""
    data = replace(opts, ext_cache=Path(ext_cache_inside) if ext_cache_inside else None).to_json()
    (eval_dir / OPTIONS_FILE).write_text(json.dumps(data, indent=1))


def load_options(path: Path) -> EvalOptions:
    """Read options.json (written by the host, but in a folder the sandbox can write: treated as data)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_OPTIONS_BYTES + 1)
    except OSError as exc:
        raise OptionsError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > _MAX_OPTIONS_BYTES:
        raise OptionsError(f"{path} is larger than {_MAX_OPTIONS_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise OptionsError(f"{path} is not JSON: {exc}") from None
    return EvalOptions.from_json(data)
