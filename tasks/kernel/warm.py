"""Warm evaluators for the subprocess isolation (GPU hosts): one long-lived `python -m harness.serve` per target
and GPU, whose reference workers stay started across the evaluations of a run (harness/serve.py). The host talks
to it over pipes; it never reads a file an evaluation wrote. A server that died, hung or timed out is killed and
a fresh one takes the next evaluation. With several GPUs, one server per GPU: evaluations run in parallel (one
per GPU) when callers evaluate from several threads."""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tasks.kernel.harness.options import TARGET_FILE

_HARNESS_DIR = Path(__file__).resolve().parent / "harness"


class WarmServer:
    """One warm evaluator process, pinned to one GPU (or the CPU)."""

    def __init__(self, target: Path, env: dict[str, str], slot: str = "") -> None:
        self.slot = slot
        """The CUDA_VISIBLE_DEVICES entry this server owns ("" for the CPU or every GPU)."""
        env = {**env, "CUDA_VISIBLE_DEVICES": slot} if slot else dict(env)
        self.home = Path(tempfile.mkdtemp(prefix="m3lab-warm-"))
        shutil.copytree(_HARNESS_DIR, self.home / "harness", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(target, self.home / TARGET_FILE)
        (self.home / "logs").mkdir()
        for p in [self.home, *self.home.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the candidate's user, never writable
        env["HOME"] = str(self.home)
        self._err = open(self.home / "serve.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.serve"], cwd=self.home, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     start_new_session=True)
        self.evaluations = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def evaluate(self, eval_dir: Path, nonce: str, timeout_s: float) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) as a one-shot evaluator would give them: 0 and the verdict line, or the
        server's end (killed after `timeout_s`, or died) with the tail of its log."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.evaluations += 1
        try:
            self.proc.stdin.write(json.dumps({"dir": str(eval_dir.resolve())}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return self._ended("the warm evaluator is gone")
        tag = f"M3LAB-VERDICT {nonce} ".encode()
        deadline = time.monotonic() + timeout_s
        out = b""
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                return 124, out.decode(errors="replace"), f"[timed out after {timeout_s:g} s (the whole evaluation)]"
            ready, _, _ = select.select([fd], [], [], min(left, 5.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return self._ended("the warm evaluator exited", out)
            out += chunk
            last = out.rsplit(b"\n", 2)
            if out.endswith(b"\n") and last[-2].startswith(tag):
                return 0, out.decode(errors="replace"), ""

    def _ended(self, what: str, out: bytes = b"") -> tuple[int, str, str]:
        code = self.proc.poll()
        self.close()
        try:
            tail = (self.home / "serve.log").read_bytes()[-1500:].decode(errors="replace")
        except OSError:
            tail = ""
        return (code if code is not None else 1), out.decode(errors="replace"), f"{what}; log tail: {tail}"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its workers die with it (PDEATHSIG) or with the group
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=30)
        self._err.close()
        shutil.rmtree(self.home, ignore_errors=True)


class WarmPool:
    """Warm servers by (target bytes, device), one per visible GPU (one for the CPU); an evaluation takes a free
    one or waits."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._free: dict[tuple[str, str], list[WarmServer]] = {}
        self._count: dict[tuple[str, str], int] = {}

    def run(self, target: Path, device: str, env: dict[str, str], eval_dir: Path, nonce: str,
            timeout_s: float) -> tuple[int, str, str]:
        key = (hashlib.sha256(target.read_bytes()).hexdigest(), device)
        server = self._take(key, target, device, env)
        try:
            return server.evaluate(eval_dir, nonce, timeout_s)
        finally:
            self._give(key, server)

    def _take(self, key: tuple[str, str], target: Path, device: str, env: dict[str, str]) -> WarmServer:
        gpus = visible_gpus() if device == "cuda" else [""]
        with self._lock:
            while True:
                free = self._free.setdefault(key, [])
                if free:
                    server = free.pop()
                    break
                started = self._count.get(key, 0)
                if started < len(gpus):
                    self._count[key] = started + 1
                    return WarmServer(target, env, gpus[started])
                self._lock.wait()
        if server.alive():
            return server
        server.close()  # died, hung or timed out last time: a fresh one on the same GPU
        return WarmServer(target, env, server.slot)

    def _give(self, key: tuple[str, str], server: WarmServer) -> None:
        with self._lock:
            self._free.setdefault(key, []).append(server)
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            for servers in self._free.values():
                for server in servers:
                    server.close()
            self._free.clear()
            self._count.clear()


def visible_gpus() -> list[str]:
    """The GPUs this host may use, as CUDA_VISIBLE_DEVICES entries (one warm server each)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d for d in listed.split(",") if d.strip()] or [""]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] or [""]


POOL = WarmPool()
atexit.register(POOL.close)
