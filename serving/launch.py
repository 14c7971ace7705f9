"""Turn a profile into the exact vLLM server command: argv, environment, parallel sizes.

Pure functions except `visible_gpu_count`, which looks at the machine. `m3lab serve --dry-run` prints
`LaunchPlan.shell_command()`; `serving.server.start_server` executes the same plan.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from serving.config import ServingConfig
from serving.profiles import MAX_MODEL_LEN_LIMIT, Profile

API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
MSA_PLUGIN_NAME = "m3lab_msa"  # entry-point name in pyproject's [project.entry-points."vllm.general_plugins"]


class LaunchError(ValueError):
    """The requested launch is impossible (no GPU for a GPU profile, bad override)."""


@dataclass(frozen=True)
class LaunchOptions:
    """Per-launch choices that override the profile (CLI flags). None = keep the profile's value."""

    port: int = 8000
    host: str = "127.0.0.1"
    model: str | None = None
    """Hub id or local path replacing the profile's model."""
    gpus: int | None = None
    """Pretend this many GPUs are visible (dry runs on another machine)."""
    tensor_parallel: int | None = None
    max_model_len: int | None = None
    kv_cache_dtype: str | None = None
    msa_plugin: bool | None = None
    msa_fp8_step: bool | None = None
    msa_fp8_q_terms: int | None = None


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start (or show) one vLLM server."""

    argv: tuple[str, ...]
    env: dict[str, str]
    """Variables set on top of the caller's environment."""
    model: str
    """Hub id or local path vLLM loads."""
    served_model_name: str
    host: str
    port: int
    device: str
    """"cpu" or "cuda"."""
    tensor_parallel: int
    expert_parallel: int
    """Expert-parallel size (TP x DP when expert parallelism is on, else 1)."""
    notes: tuple[str, ...] = field(default=())

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def shell_command(self) -> str:
        """The command as one copy-pasteable shell line (environment first)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        cmd = shlex.join(self.argv)
        return f"{env} {cmd}" if env else cmd


def visible_gpu_count() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else what `nvidia-smi -L` lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _parallel_sizes(profile: Profile, options: LaunchOptions, gpus: int, dry_run: bool) -> tuple[int, list[str]]:
    notes: list[str] = []
    if options.tensor_parallel is not None:
        if options.tensor_parallel < 1:
            raise LaunchError(f"--tp must be >= 1, got {options.tensor_parallel}")
        return options.tensor_parallel, notes
    if profile.parallel == "single":
        return 1, notes
    if gpus == 0:
        if not dry_run:
            raise LaunchError(f"profile {profile.name!r} needs GPUs and none is visible (pass --gpus N with --dry-run "
                              "to see the command for another machine)")
        notes.append(f"no GPU visible: sized for the profile's default of {profile.default_gpus} GPUs (--gpus N to change)")
        return profile.default_gpus, notes
    return gpus, notes


def _model_source(profile: Profile, options: LaunchOptions, config: ServingConfig) -> str:
    return options.model or profile.model.replace("{models_dir}", str(config.models_dir))


def _model_args(profile: Profile, options: LaunchOptions, config: ServingConfig) -> list[str]:
    model = _model_source(profile, options, config)
    length = options.max_model_len or profile.max_model_len
    if not 0 < length <= MAX_MODEL_LEN_LIMIT:
        raise LaunchError(f"--max-model-len must be in 1..{MAX_MODEL_LEN_LIMIT}, got {length}")
    args = ["--model", model, "--served-model-name", profile.served_model_name, "--dtype", profile.dtype,
            "--max-model-len", str(length), "--kv-cache-dtype", options.kv_cache_dtype or profile.kv_cache_dtype]
    if profile.block_size is not None:
        args += ["--block-size", str(profile.block_size)]
    if profile.enforce_eager:
        args.append("--enforce-eager")
    if profile.trust_remote_code:
        args.append("--trust-remote-code")
    return args


def _feature_args(profile: Profile) -> list[str]:
    args: list[str] = []
    if profile.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", profile.tool_call_parser]
    if profile.reasoning_parser:
        args += ["--reasoning-parser", profile.reasoning_parser]
    return args


def _plugin_args(profile: Profile, options: LaunchOptions, msa_plugin: bool) -> list[str]:
    """Our plugin's engine options as vLLM's `--additional-config` (serving/plugin/options.py); the FP8 step is
    refused here when the command could not honour it (no plugin, no fp8 KV cache)."""
    from serving.plugin.options import PluginOptionError, PluginOptions

    fp8_step = profile.msa_fp8_step if options.msa_fp8_step is None else options.msa_fp8_step
    kv_dtype = options.kv_cache_dtype or profile.kv_cache_dtype
    if fp8_step and not msa_plugin:
        raise LaunchError("--msa-fp8-step needs the MSA plugin (drop --no-msa-plugin)")
    if fp8_step and kv_dtype not in ("fp8", "fp8_e4m3"):
        raise LaunchError(f"--msa-fp8-step needs an fp8 e4m3 KV cache (--kv-cache-dtype fp8), got {kv_dtype!r}")
    q_terms = profile.msa_fp8_q_terms if options.msa_fp8_q_terms is None else options.msa_fp8_q_terms
    if q_terms == 2 and not fp8_step:
        raise LaunchError("--msa-fp8-q-terms 2 needs --msa-fp8-step")
    try:  # the options' own checks (e.g. a profile's msa_fp8_q_terms = 3), as one launch error
        config = PluginOptions(fp8_step=fp8_step, fp8_q_terms=q_terms).as_config()
    except PluginOptionError as exc:
        raise LaunchError(f"msa_fp8_q_terms: {exc}") from exc
    return ["--additional-config", json.dumps(config, separators=(",", ":"))] if config else []


def _environment(profile: Profile, msa_plugin: bool, device: str) -> dict[str, str]:
    env = dict(profile.env)
    if device == "cpu":
        env.update(profile.cpu_env)
    # VLLM_PLUGINS selects which installed general plugins load; "" loads none, so our MSA plugin (installed in
    # the vLLM venv by scripts/setup/vllm.sh) stays out unless asked for.
    env["VLLM_PLUGINS"] = MSA_PLUGIN_NAME if msa_plugin else ""
    return env


def build_launch(profile: Profile, config: ServingConfig, options: LaunchOptions,
                 dry_run: bool = False) -> LaunchPlan:
    """The vLLM command for `profile` on this machine (or on `options.gpus` GPUs)."""
    gpus = options.gpus if options.gpus is not None else visible_gpu_count()
    device = "cuda" if gpus > 0 or (dry_run and profile.parallel == "visible_gpus") else "cpu"
    tp, notes = _parallel_sizes(profile, options, gpus, dry_run)
    argv = [str(config.vllm_python), "-m", API_SERVER_MODULE, *_model_args(profile, options, config),
            "--host", options.host, "--port", str(options.port)]
    if tp > 1 or profile.parallel == "visible_gpus":
        argv += ["--tensor-parallel-size", str(tp)]
    expert_parallel = profile.expert_parallel and tp > 1  # EP over one rank is a no-op: keep the command honest
    if expert_parallel:
        argv.append("--enable-expert-parallel")
    if device == "cuda" and profile.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(profile.gpu_memory_utilization)]
    msa = profile.msa_plugin if options.msa_plugin is None else options.msa_plugin
    argv += _feature_args(profile) + _plugin_args(profile, options, msa) + list(profile.extra_args)
    return LaunchPlan(argv=tuple(argv), env=_environment(profile, msa, device),
                      model=_model_source(profile, options, config), served_model_name=profile.served_model_name, host=options.host, port=options.port,
                      device=device, tensor_parallel=tp, expert_parallel=tp if expert_parallel else 1,
                      notes=tuple(notes))


def vllm_installed(config: ServingConfig) -> bool:
    """True when the configured vLLM venv has a python (setup has run)."""
    return Path(config.vllm_python).is_file()


@dataclass(frozen=True)
class ArgsCheck:
    """vLLM's verdict on one launch command (see serving/check_launch.py)."""

    ok: bool
    problems: tuple[str, ...]


def check_with_vllm(plans: list[LaunchPlan], config: ServingConfig, timeout_s: float = 300.0) -> list[ArgsCheck]:
    """Parse and validate each plan's arguments with the installed vLLM (in its venv); starts no server."""
    if not vllm_installed(config):
        raise LaunchError(f"no vLLM environment at {config.vllm_venv}; run scripts/setup/vllm.sh")
    argvs = [list(plan.argv[3:]) for plan in plans]  # after `python -m vllm.entrypoints.openai.api_server`
    done = subprocess.run([str(config.vllm_python), "-m", "serving.check_launch"], input=json.dumps(argvs),
                          capture_output=True, text=True, timeout=timeout_s, check=False,
                          env={**os.environ, "VLLM_PLUGINS": ""})
    if done.returncode != 0:
        raise LaunchError(f"vLLM argument check failed to run: {done.stderr.strip()[-2000:]}")
    return [ArgsCheck(bool(r["ok"]), tuple(r["problems"])) for r in json.loads(done.stdout.strip().splitlines()[-1])]
