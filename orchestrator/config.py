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
    [store]            # run state in PostgreSQL (default: SQLite files); URL also from M3LAB_STORE_URL
    url = "postgresql://m3lab@db:5432/m3lab"
    [cluster]          # where `--cluster` submits runs (orchestrator/store/settings.py)
    address = "auto"
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from orchestrator.store.settings import ClusterSettings, StoreSettings  # [issue 15]
from serving.client import ModelEndpoint


class ConfigError(ValueError):
    """The configuration file or a flag is invalid."""


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


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides its task."""

    producer: ModelEndpoint = field(default_factory=ModelEndpoint)
    verifier: ModelEndpoint = field(default_factory=ModelEndpoint)
    budget: BudgetLimits = field(default_factory=BudgetLimits)
    loop: LoopSettings = field(default_factory=LoopSettings)
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
        }


def _typed(cls: type, data: Mapping[str, Any], section: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys in [{section}]: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**data)


def _endpoint(shared: Mapping[str, Any], role: Mapping[str, Any], section: str) -> ModelEndpoint:
    env = {
        key: os.environ[var]
        for key, var in (("base_url", "M3LAB_BASE_URL"), ("model", "M3LAB_MODEL"), ("api_key", "M3LAB_API_KEY"))
        if os.environ.get(var)
    }
    return _typed(ModelEndpoint, {**shared, **env, **role}, section)


def load_settings(config_file: Path | None = None) -> Settings:
    """Read m3lab.toml (the given file, else ./m3lab.toml when present) and the endpoint environment."""
    path = config_file or (Path("m3lab.toml") if Path("m3lab.toml").exists() else None)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    # [serving] belongs to serving/config.py (server paths); it shares the file.
    known = {"runs_dir", "sandbox_backend", "model", "producer", "verifier", "budget", "loop", "serving",
             "store", "cluster"}  # [issue 15] store, cluster
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"unknown sections/keys in {path}: {', '.join(unknown)}")
    shared = data.get("model", {})
    return Settings(
        producer=_endpoint(shared, data.get("producer", {}), "producer"),
        verifier=_endpoint(shared, data.get("verifier", {}), "verifier"),
        budget=_typed(BudgetLimits, data.get("budget", {}), "budget"),
        loop=_typed(LoopSettings, data.get("loop", {}), "loop"),
        runs_dir=Path(data.get("runs_dir", "runs")),
        sandbox_backend=str(data.get("sandbox_backend", "auto")),
        store=_store(data.get("store", {})),  # [issue 15]
        cluster=_typed(ClusterSettings, data.get("cluster", {}), "cluster"),
    )


def _store(table: Mapping[str, Any]) -> StoreSettings:
    """[store] with the URL from M3LAB_STORE_URL when set (it may carry a password)."""
    store = _typed(StoreSettings, table, "store")
    if os.environ.get("M3LAB_STORE_URL"):
        store = dataclasses.replace(store, url=os.environ["M3LAB_STORE_URL"])
    if store.url and not store.url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"[store] url must be a postgresql:// URL (or empty for SQLite), got {store.url[:40]!r}")
    return store


def with_budget(settings: Settings, **overrides: Any) -> Settings:
    """Settings with budget fields replaced by the CLI flags that were given (None = keep)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        if value <= 0:
            raise ConfigError(f"budget {key} must be positive, got {value}")
    return dataclasses.replace(settings, budget=dataclasses.replace(settings.budget, **given))


def settings_from_json(snapshot: Mapping[str, Any], current: Settings) -> Settings:
    """Rebuild a run's settings on resume: its own budget/loop snapshot, endpoints from the current environment
    (secrets are never stored in run.json)."""
    return dataclasses.replace(
        current,
        budget=BudgetLimits(**snapshot["budget"]),
        loop=LoopSettings(**snapshot["loop"]),
        runs_dir=Path(snapshot["runs_dir"]),
        sandbox_backend=snapshot.get("sandbox_backend", "auto"),
    )
