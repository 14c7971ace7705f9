"""Typed configuration of a run. Precedence: CLI flags > m3lab.toml > defaults; environment variables only for
endpoints and secrets (M3LAB_BASE_URL, M3LAB_MODEL, M3LAB_API_KEY).

m3lab.toml:
    runs_dir = "runs"
    [model]            # both roles
    base_url = "http://127.0.0.1:8000/v1"
    [producer]         # overrides [model] for the producer
    temperature = 0.3
    [verifier]         # overrides [model] for the verifier (may be another endpoint or model)
    model = "MiniMax-M3"
    [budget]
    max_iterations = 10
    [loop]
    max_turns = 12
    [search]           # K producers (islands) per kernel/code search, evaluated concurrently
    islands = 4
    [store]            # run state in PostgreSQL (default: SQLite files); URL also from M3LAB_STORE_URL
    url = "postgresql://m3lab@db:5432/m3lab"
    [cluster]          # where `--cluster` submits runs (orchestrator/store/settings.py)
    address = "auto"
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.store.settings import ClusterSettings, StoreSettings  # [issue 15]
from serving.client import ModelEndpoint


class ConfigError(ValueError):
    """The configuration file or a flag is invalid; `problems` lists each one (`[table] key: what is wrong`)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


@dataclass(frozen=True)
class BudgetLimits:
    """When a run must end; reaching any limit ends it cleanly with a report."""

    max_iterations: int = 10
    """Producer -> verifier rounds."""
    max_hours: float = 4.0
    """Wall-clock time the run has been active (time while paused does not count)."""
    max_tokens: int = 5_000_000
    """ONE quota over every call: prompt (text and image), completion and reasoning tokens."""


@dataclass(frozen=True)
class LoopSettings:
    """How the producer-verifier loop behaves."""

    max_turns: int = 12
    """Producer model calls in one iteration before its work goes to the verifier anyway."""
    stuck_patience: int = 3
    """Iterations with the same failure or an unchanged workspace before the strategy changes (twice: stop)."""
    review_on_failure: bool = False
    """Also ask the verifier model to review when the structural check already failed (costs tokens)."""
    exec_timeout_s: float = 300.0
    """Default time limit of one producer command."""
    observation_chars: int = 12_000
    """Tool output longer than this is cut (head and tail) in the producer's context; the full text is logged."""
    workspace_quota_mb: int = 8192
    """Disk quota of the producer's workspace: a command that fills it past this is stopped (exit reason
    `quota`) and the workspace rolled back to the last commit. 0 turns it off."""
    plan: bool = True
    """Ask the planner for a plan first (a tiny model's plan misleads more than it helps, and costs a call)."""


@dataclass(frozen=True)
class SearchSettings:
    """A population search (islands, as OpenEvolve and AlphaEvolve run): `islands` producers, each with its own
    conversation and workspace, whose candidates are evaluated at the same time; one node records them all."""

    islands: int = 1
    """Producers in flight; 1 = the one-producer loop. Each round produces and verifies one candidate per island."""
    migrate_every: int = 2
    """Every this many rounds the best candidate so far is copied into the islands that have not matched it
    (0: never)."""


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides its task."""

    producer: ModelEndpoint = field(default_factory=ModelEndpoint)
    verifier: ModelEndpoint = field(default_factory=ModelEndpoint)
    budget: BudgetLimits = field(default_factory=BudgetLimits)
    loop: LoopSettings = field(default_factory=LoopSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    """Islands: how many producers a search keeps in flight."""
    runs_dir: Path = Path("runs")
    sandbox_backend: str = "auto"
    """"auto" (Docker when an engine answers, else the process sandbox), "docker" or "process"."""
    store: StoreSettings = field(default_factory=StoreSettings)  # [issue 15]
    """Run state: SQLite files (default) or PostgreSQL (checkpoints, run index, leases)."""
    cluster: ClusterSettings = field(default_factory=ClusterSettings)  # [issue 15]
    """The Ray cluster `--cluster` submits to."""

    def to_json(self) -> dict[str, Any]:
        """Snapshot for run.json (no secrets)."""
        return {
            "producer": self.producer.describe(),
            "verifier": self.verifier.describe(),
            "budget": dataclasses.asdict(self.budget),
            "loop": dataclasses.asdict(self.loop),
            "runs_dir": str(self.runs_dir),
            "sandbox_backend": self.sandbox_backend,
            "store": self.store.describe(),  # [issue 15] where the checkpoints are (never the URL)
            # islands: only when there are several, so a one-producer run's run.json is as it always was
            **({"search": dataclasses.asdict(self.search)} if self.search.islands > 1 else {}),
        }


Check = tuple[str, Callable[[Any], bool]]
"""(what is expected, in words; a test of a value)."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _url(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        parts = urlsplit(v)
        parts.port  # noqa: B018 - raises ValueError for a port outside 0..65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


POSITIVE_INT: Check = ("a positive integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0)
POSITIVE_NUMBER: Check = ("a positive number", lambda v: _number(v) and v > 0)
BY_TYPE: dict[str, Check] = {
    "int": POSITIVE_INT,
    "float": POSITIVE_NUMBER,
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "str | None": ("a string", lambda v: isinstance(v, str)),
    "Path": ("a path (a string)", lambda v: isinstance(v, str) and bool(v)),
}
"""The check of a field by its annotation; `BY_NAME` refines it where the range is narrower or wider."""
BY_NAME: dict[str, Check] = {
    "base_url": ("an http(s) URL with a valid port, e.g. \"http://127.0.0.1:8000/v1\"", _url),
    "temperature": ("a number from 0 to 2", lambda v: _number(v) and 0 <= v <= 2),
    "frequency_penalty": ("a number from -2 to 2", lambda v: _number(v) and -2 <= v <= 2),
    "retry_for_s": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "overload_retry_for_s": ("a number >= 0", lambda v: _number(v) and v >= 0),
    "max_concurrency": ("an integer >= 0 (0: no limit)",
                        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "migrate_every": ("an integer >= 0 (0: never)",
                      lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "max_retries": ("an integer >= 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "sandbox_backend": ("one of auto, docker, process", lambda v: v in ("auto", "docker", "process")),
    "stop": ("a string or a list of strings",
             lambda v: isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v))),
}


def _shown(value: Any) -> str:
    """A value as the user wrote it in TOML (strings quoted)."""
    return json.dumps(value, default=str)


def field_problems(cls: type, data: Mapping[str, Any], where: str) -> list[str]:
    """Every unknown key and every value of the wrong type or range in one table, as
    `[table] key: expected ..., got ...` lines (`where` is "[table] " or the name of a flag's source)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = [f"{where}{key}: unknown key (known: {', '.join(sorted(fields))})" for key in data if key not in fields]
    for key, value in data.items():
        if key not in fields:
            continue
        declared = fields[key].type
        kind = declared if isinstance(declared, str) else getattr(declared, "__name__", "")
        expected, ok = BY_NAME.get(key) or BY_TYPE.get(kind, ("a value", lambda v: True))
        if not ok(value):
            problems.append(f"{where}{key}: expected {expected}, got {_shown(value)}")
    return problems


def _table(data: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = data.get(name, {})
    if isinstance(value, dict):
        return value
    problems.append(f"{name}: expected a table [{name}], got {_shown(value)}")
    return {}


ENDPOINT_ENV = {"base_url": "M3LAB_BASE_URL", "model": "M3LAB_MODEL", "api_key": "M3LAB_API_KEY"}


def _endpoint_env(problems: list[str]) -> dict[str, str]:
    """The endpoint fields set in the environment (they override [model], not the role tables)."""
    env = {key: os.environ[var] for key, var in ENDPOINT_ENV.items() if os.environ.get(var)}
    if "base_url" in env and not _url(env["base_url"]):
        problems.append(f"M3LAB_BASE_URL: expected {BY_NAME['base_url'][0]}, got {_shown(env['base_url'])}")
    return env


TOP_LEVEL: dict[str, Check] = {"runs_dir": BY_TYPE["Path"], "sandbox_backend": BY_NAME["sandbox_backend"]}
TABLES = ("model", "producer", "verifier", "budget", "loop", "search", "serving", "store", "cluster")
"""[serving] belongs to serving/config.py (server paths); it shares the file."""


def settings_problems(data: Mapping[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Every problem of a parsed m3lab.toml, and its tables (empty where missing or not a table)."""
    problems = [f"{key}: unknown key (known: {', '.join([*TOP_LEVEL, *(f'[{t}]' for t in TABLES)])})"
                for key in data if key not in TOP_LEVEL and key not in TABLES]
    for key, (expected, ok) in TOP_LEVEL.items():
        if key in data and not ok(data[key]):
            problems.append(f"{key}: expected {expected}, got {_shown(data[key])}")
    tables = {name: _table(data, name, problems) for name in TABLES}
    for name, cls in (("model", ModelEndpoint), ("producer", ModelEndpoint), ("verifier", ModelEndpoint),
                      ("budget", BudgetLimits), ("loop", LoopSettings), ("search", SearchSettings),
                      ("store", StoreSettings),
                      ("cluster", ClusterSettings)):
        problems += field_problems(cls, tables[name], f"[{name}] ")
    store_url = os.environ.get("M3LAB_STORE_URL") or tables["store"].get("url")
    if isinstance(store_url, str) and store_url and not store_url.startswith(("postgresql://", "postgres://")):
        problems.append(f"[store] url: expected a postgresql:// URL (or empty for SQLite), got {_shown(store_url[:40])}")
    return problems, tables


def _store(table: Mapping[str, Any]) -> StoreSettings:
    """[store] with the URL from M3LAB_STORE_URL when set (it may carry a password)."""
    store = StoreSettings(**table)
    if os.environ.get("M3LAB_STORE_URL"):
        store = dataclasses.replace(store, url=os.environ["M3LAB_STORE_URL"])
    return store


def _with_stop_tuple(endpoint: dict[str, Any]) -> dict[str, Any]:
    """TOML gives `stop` as a list (or one string); the endpoint is hashable (cached), so it holds a tuple."""
    stop = endpoint.get("stop")
    if isinstance(stop, (list, str)):
        endpoint["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
    return endpoint


def load_settings(config_file: Path | None = None) -> Settings:
    """Read m3lab.toml (the given file, else ./m3lab.toml when present) and the endpoint environment; a
    `ConfigError` lists every problem at once, before anything is created."""
    path = config_file or (Path("m3lab.toml") if Path("m3lab.toml").exists() else None)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    problems, tables = settings_problems(data)
    env = _endpoint_env(problems)
    roles = {role: _with_stop_tuple({**tables["model"], **env, **tables[role]}) for role in ("producer", "verifier")}
    if problems:
        raise ConfigError(f"invalid config {path or '(environment)'}: " + "; ".join(problems), problems)
    return Settings(
        producer=ModelEndpoint(**roles["producer"]),
        verifier=ModelEndpoint(**roles["verifier"]),
        budget=BudgetLimits(**tables["budget"]),
        loop=LoopSettings(**tables["loop"]),
        search=SearchSettings(**tables["search"]),
        runs_dir=Path(data.get("runs_dir", "runs")),
        sandbox_backend=str(data.get("sandbox_backend", "auto")),
        store=_store(tables["store"]),  # [issue 15]
        cluster=ClusterSettings(**tables["cluster"]),
    )


BUDGET_FLAGS = {"max_iterations": "--max-iterations", "max_hours": "--hours", "max_tokens": "--tokens"}


def with_flags(settings: Settings, islands: int | None = None, **overrides: Any) -> Settings:
    """Settings with the run-starting CLI flags that were given (None = keep): the budget fields, and `--islands`
    for `[search] islands`."""
    given = {k: v for k, v in overrides.items() if v is not None}
    problems = [f"{BUDGET_FLAGS.get(k, k)}{p[len(k):]}" for k, v in given.items()
                for p in field_problems(BudgetLimits, {k: v}, "")]
    if islands is not None:
        problems += [f"--islands{p[len('islands'):]}" for p in field_problems(SearchSettings, {"islands": islands}, "")]
    if problems:
        raise ConfigError("; ".join(problems), problems)
    search = settings.search if islands is None else dataclasses.replace(settings.search, islands=islands)
    return dataclasses.replace(settings, budget=dataclasses.replace(settings.budget, **given), search=search)


def settings_from_json(snapshot: Mapping[str, Any], current: Settings) -> Settings:
    """Rebuild a run's settings on resume: its own budget/loop snapshot, endpoints from the current environment
    (secrets are never stored in run.json)."""
    return dataclasses.replace(
        current,
        budget=BudgetLimits(**snapshot["budget"]),
        loop=LoopSettings(**snapshot["loop"]),
        search=SearchSettings(**snapshot.get("search", {})),  # a run keeps the islands it started with
        runs_dir=Path(snapshot["runs_dir"]),
        sandbox_backend=snapshot.get("sandbox_backend", "auto"),
    )
