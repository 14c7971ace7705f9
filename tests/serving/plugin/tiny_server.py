"""Test support: start the CPU build of vLLM on a tiny M3 directory, and compare its outputs with the reference."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from serving.config import ServingConfig

SERVED_NAME = "tiny-m3"


class ServerFailed(RuntimeError):
    """The vLLM server exited or never answered; the message carries the log tail."""


@dataclass
class RunningServer:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: engine core + workers go too
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


def missing_service(reason: str) -> None:
    """Service-dependent tests fail under CI=true and skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def vllm_python() -> Path:
    """The vLLM venv's python, able to import vllm and this repo (else skip / fail in CI)."""
    python = ServingConfig().vllm_python
    if not python.exists():
        missing_service(f"no vLLM CPU venv at {python.parent.parent} (scripts/setup/vllm.sh installs it)")
    probe = subprocess.run([str(python), "-c", "import vllm, serving.plugin, kernels.msa"], capture_output=True,
                           text=True, cwd=Path(__file__).resolve().parents[3])
    if probe.returncode != 0:
        missing_service(f"the vLLM venv cannot import vllm + this repo (pip install --no-deps -e . in it): "
                        f"{probe.stderr[-500:]}")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(python: Path, model_dir: Path, log_path: Path, *, plugins: str | None = None,
                 max_batched_tokens: int = 256, timeout_s: float = 600.0, extra_args: tuple[str, ...] = (),
                 ) -> RunningServer:
    """Serve model_dir with `python -m vllm.entrypoints.openai.api_server`; wait for /v1/models.

    plugins: value for VLLM_PLUGINS (None = unset = every installed plugin, ours included).
    max_batched_tokens 256 splits a 4-block prompt into chunks (chunked prefill with context).
    extra_args: more server flags (e.g. `--kv-cache-dtype fp8`).
    """
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    env.pop("VLLM_PLUGINS", None)
    if plugins is not None:
        env["VLLM_PLUGINS"] = plugins
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", SERVED_NAME, "--dtype", "bfloat16", "--max-model-len", "2048",
           "--block-size", "128", "--max-num-batched-tokens", str(max_batched_tokens), "--max-num-seqs", "4",
           "--enforce-eager", "--host", "127.0.0.1", "--port", str(port), *extra_args]
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent,
                            start_new_session=True)
    server = RunningServer(proc, f"http://127.0.0.1:{port}/v1", log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"vLLM exited with {proc.returncode}:\n{server.log()[-4000:]}")
        try:
            if httpx.get(f"{server.base_url}/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(2)
    server.stop()
    raise ServerFailed(f"vLLM did not answer within {timeout_s:.0f} s:\n{server.log()[-4000:]}")


def complete(base_url: str, prompt: list[int], max_tokens: int, prompt_logprobs: bool) -> dict:
    """Greedy completion of token ids; returns the choice (token_ids, logprobs, prompt_logprobs)."""
    body = {"model": SERVED_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "logprobs": 1, "return_token_ids": True, "ignore_eos": True}
    if prompt_logprobs:
        body["prompt_logprobs"] = 1
    r = httpx.post(f"{base_url}/completions", json=body, timeout=900)
    r.raise_for_status()
    return r.json()["choices"][0]


@dataclass(frozen=True)
class Agreement:
    """How closely vLLM's logprobs follow a reference forward on one sequence."""

    top1_abs_diff: torch.Tensor
    """Per prompt position i >= 1: |vLLM's top-1 logprob - reference max logprob| after prefix [:i]."""
    top1_same_token: torch.Tensor
    """Per prompt position: vLLM's top-1 token is the reference's argmax (bool)."""
    generated_ok: list[bool]
    """Per generated token: the reference argmax, or within `margin` of it (a near tie: two bf16 logits ~16 each
    round by up to ~0.06-0.12, so greedy picks closer than ~0.2 may legitimately swap)."""
    generated_abs_diff: list[float]

    def summary(self, start: int = 0) -> str:
        d = self.top1_abs_diff[start:]
        return (f"positions {start}+: mean |d| {d.mean():.4f}, max {d.max():.3f}, >0.15: {int((d > 0.15).sum())}"
                f"/{d.numel()}, top-1 agree {float(self.top1_same_token[start:].float().mean()):.3f}; "
                f"generated ok {self.generated_ok}, |d| {[round(x, 3) for x in self.generated_abs_diff]}")


def agreement(choice: dict, prompt: list[int], ref_logprobs: torch.Tensor, margin: float = 0.2) -> Agreement:
    """Compare a completion choice with reference log-softmax rows for prompt + generated tokens."""
    diffs, same = [], []
    for i in range(1, len(prompt)):
        entries = choice["prompt_logprobs"][i]
        tok, info = next((int(k), v) for k, v in entries.items() if v["rank"] == 1)
        row = ref_logprobs[i - 1]
        diffs.append(abs(info["logprob"] - float(row.max())))
        same.append(tok == int(row.argmax()))
    ok, gen_diffs = [], []
    for j, tok in enumerate(choice["token_ids"]):
        row = ref_logprobs[len(prompt) - 1 + j]
        ok.append(float(row[tok]) >= float(row.max()) - margin)
        gen_diffs.append(abs(choice["logprobs"]["token_logprobs"][j] - float(row[tok])))
    return Agreement(torch.tensor(diffs), torch.tensor(same), ok, gen_diffs)
