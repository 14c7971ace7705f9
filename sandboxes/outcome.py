"""Turning what a backend saw into an `ExecResult`: why the command ended, and bounded output."""
from __future__ import annotations

from sandboxes.base import ExecResult, ExitReason

OUTPUT_CAP_BYTES = 1 << 20
"""Per stream: a command printing gigabytes must not exhaust the orchestrator's memory; the tail is kept
because errors come last."""
TIMEOUT_EXIT = 124
"""`timeout` exits 124 when the command ended on its TERM."""
KILLED_EXIT = 137
"""128 + SIGKILL: the kernel's OOM killer, `timeout -k`, or our own kill."""


class TailBuffer:
    """Keeps the last `cap` bytes written to it and counts what was dropped."""

    def __init__(self, cap: int = OUTPUT_CAP_BYTES) -> None:
        self.cap = cap
        self._chunks: list[bytes] = []
        self._size = 0
        self.dropped = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > 2 * self.cap:
            self._compact()

    def _compact(self) -> None:
        joined = b"".join(self._chunks)
        keep = joined[-self.cap:]
        self.dropped += len(joined) - len(keep)
        self._chunks, self._size = [keep], len(keep)

    def text(self) -> str:
        self._compact()
        body = b"".join(self._chunks).decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} bytes dropped ...]\n{body}"
        return body


def classify(exit_code: int, duration_s: float, timeout_s: float, oom: bool, timed_out: bool = False) -> ExitReason:
    """Why a command ended. OOM wins (the cgroup counter is unambiguous); a kill after the deadline is a
    timeout; any other SIGKILL is "killed"."""
    if oom:
        return "oom"
    if timed_out:
        return "timeout"
    if exit_code == TIMEOUT_EXIT and duration_s >= timeout_s * 0.98:
        return "timeout"
    if exit_code in (KILLED_EXIT, -9) and duration_s >= timeout_s * 0.98:
        return "timeout"
    if exit_code in (KILLED_EXIT, -9):
        return "killed"
    return "exited"


def make_result(exit_code: int, out: TailBuffer, err: TailBuffer, duration_s: float, timeout_s: float,
                oom: bool, timed_out: bool = False) -> ExecResult:
    reason = classify(exit_code, duration_s, timeout_s, oom, timed_out)
    stderr = err.text()
    if reason == "oom":
        stderr += "\n[m3lab sandbox] out of memory: the command exceeded the sandbox memory limit and was killed"
    elif reason == "timeout":
        stderr += f"\n[m3lab sandbox] timed out after {timeout_s:g} s and was killed"
    return ExecResult(exit_code, out.text(), stderr, duration_s, reason)
