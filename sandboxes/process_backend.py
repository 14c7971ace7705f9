"""`ProcessSandbox`: bubblewrap namespaces plus cgroup / rlimit limits, for hosts without a Docker engine.

Each exec is a fresh `bwrap` in new user, pid, net, ipc, uts and mount namespaces, as an unprivileged uid with
every capability dropped, seeing only the host's system directories read-only, the workspace at /work, the
spec's `host_paths` read-only and a size-limited tmpfs at /tmp. It runs the host's own tools (there is no
image). Isolation is weaker than Docker's: same kernel attack surface without seccomp, and limits depend on
cgroups being writable (see `enforced`).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from sandboxes import quota
from sandboxes.agent import BOOT, AgentDied, ExecGate, LineAgent, PipeAgent
from sandboxes.base import ExecResult, SandboxError, SandboxSpec, inside_path
from sandboxes.cgroups import LimitGroup, create_group, kill_pids_in
from sandboxes.execpath import MAX_AGENT_FAILURES, GatedSandbox
from sandboxes.outcome import TailBuffer, make_result
from sandboxes.validate import uid_gid

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates",
             "passwd", "group", "nsswitch.conf", "localtime", "hosts", "mime.types", "fonts", "matplotlibrc",
             "python3", "python3.11")
"""The part of /etc programs need; the rest (credentials, host config) stays invisible."""
RUNTIME_DIR = Path("/run/m3lab")
HOST_PYTHON = Path("/usr/bin/python3")
"""Runs the exec agent (stdlib only); the sandbox sees the host's /usr, so any python3 >= 3.8 there works."""
log = logging.getLogger(__name__)
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def _root_args() -> list[str]:
    args: list[str] = []
    for d in SYSTEM_DIRS:
        p = Path(d)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), d]
        elif p.is_dir():
            args += ["--ro-bind", d, d]
    for name in ETC_FILES:
        p = Path("/etc") / name
        if p.exists():
            args += ["--ro-bind", str(p), inside_path(p)]
    if Path("/sys/devices/system/cpu").is_dir():
        args += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    return args


def host_binds(paths: Sequence[Path]) -> list[tuple[str, str]]:
    """(source, destination) of each host path, plus the base interpreter of any virtualenv among them
    (a venv's python is a symlink into it, e.g. /root/.pyenv/versions/3.11.7)."""
    binds = [(str(p), inside_path(p)) for p in paths]
    for p in paths:
        cfg = Path(p) / "pyvenv.cfg"
        if not cfg.is_file():
            continue
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            prefix = Path(value.strip()).parent
            if key.strip() == "home" and prefix.is_dir() and not str(prefix).startswith("/usr"):
                binds.append((str(prefix), str(prefix)))
    return binds


def _gpu_args() -> list[str]:
    args = []
    for dev in sorted(Path("/dev").glob("nvidia*")) + sorted(Path("/dev").glob("dri")):
        args += ["--dev-bind", str(dev), str(dev)]
    if Path("/sys").is_dir():
        args += ["--ro-bind", "/sys", "/sys"]
    return args


class ProcessSandbox(GatedSandbox):
    """See `sandboxes.base.Sandbox`; `enforced` names the limits the kernel really applies here."""

    backend = "process"

    def __init__(self, spec: SandboxSpec) -> None:
        """`spec` is validated (`open_sandbox` checks it once for every backend)."""
        bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
        if bwrap is None or prlimit is None:
            raise SandboxError("the process sandbox needs bubblewrap and prlimit: "
                               "apt-get install -y bubblewrap util-linux")
        self._bwrap, self._prlimit = bwrap, prlimit
        self.spec = spec
        # The owner pid in the name lets the reaper find leftovers of a crashed parent.
        self.id = f"proc-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.started = time.monotonic()
        self._closed = False
        self.group: LimitGroup = create_group(self.id, spec.memory_mb, spec.pids, spec.cpus)
        self.tmp_dir = self._mount_tmp()
        self._gate = ExecGate(self._sweep)
        self._quota = quota.Watcher(spec, lambda: self.group.kill_all())
        self._keep: set[int] = set()
        if self.start_agent() is None:
            self._probe()
        self.enforced = {**self.group.enforced, "tmpfs": True,
                         "tmp_persists": self.tmp_dir is not None, "network": True, "filesystem": True}

    def _probe(self) -> None:
        """Fail at open, with bubblewrap's own words, where namespaces are not allowed (e.g. no user
        namespaces), instead of every exec returning exit 1."""
        res = self._run(self._limits_prefix() + self._bwrap_argv(["true"], {}, "/"), 30.0)
        if res.exit_code != 0:
            self.close()
            raise SandboxError(f"bubblewrap cannot create a sandbox on this host: {res.stderr.strip()[-500:]}")

    def start_agent(self) -> LineAgent | None:
        """One bubblewrap running the exec agent: later commands cost a fork, not new namespaces. Needs the
        host's python3; None (per-exec bubblewrap) when it is missing or fails."""
        if self._agent is not None or self._agent_failures >= MAX_AGENT_FAILURES or not HOST_PYTHON.exists():
            return self._agent
        fd, err_path = tempfile.mkstemp(prefix=f"m3lab-{self.id}-", suffix=".agent.err")
        os.close(fd)
        self._agent_err = Path(err_path)
        argv = self._limits_prefix() + self._bwrap_argv([str(HOST_PYTHON), "-u", "-c", BOOT], {}, "/")
        try:
            self._agent = PipeAgent(argv, self._agent_err)
        except AgentDied as exc:
            self._agent_failures += 1
            log.debug("process sandbox %s: exec agent unavailable: %s", self.id, exc)
            return None
        # bwrap, its pid-1 and the agent: everything else in the group after a command is a stray.
        self._keep = self.group.pids()
        return self._agent

    def _sweep(self) -> None:
        """Kill what finished commands left running (the agent's namespace outlives each command)."""
        procs = self.group.procs_files
        if procs and self._agent is not None:
            kill_pids_in(procs[0], self._keep)

    def _mount_tmp(self) -> Path | None:
        """A host tmpfs per sandbox so /tmp persists across execs like Docker's; needs root (mount)."""
        if os.geteuid() != 0:
            return None
        d = RUNTIME_DIR / self.id
        d.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.spec.tmpfs_mb}m,mode=1777,nosuid,nodev",
                               "tmpfs", str(d)], capture_output=True, text=True)
        if proc.returncode != 0:
            d.rmdir()
            return None
        (d / ".owner").write_text(f"{os.getpid()}\n")
        return d

    def _bwrap_argv(self, argv: list[str], env: Mapping[str, str], workdir: str) -> list[str]:
        uid, gid = uid_gid(self.spec)
        args = [self._bwrap, "--unshare-all", "--unshare-user", "--uid", str(uid), "--gid", str(gid),
                "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if self.spec.network:
            args.append("--share-net")
        args += _root_args()
        args += ["--proc", "/proc", "--dev", "/dev"]
        if self.tmp_dir is not None:
            args += ["--bind", str(self.tmp_dir), "/tmp"]
        else:
            args += ["--size", str(self.spec.tmpfs_mb << 20), "--perms", "1777", "--tmpfs", "/tmp"]
        if self.spec.workspace is not None:
            args += ["--bind", str(self.spec.workspace), "/work"]
        for src, dest in host_binds(self.spec.host_paths):
            args += ["--ro-bind", src, dest]
        if self.spec.gpu:
            args += _gpu_args()
        args += ["--remount-ro", "/", "--chdir", workdir, "--clearenv"]
        for key, value in {"PATH": DEFAULT_PATH, "HOME": "/tmp", **self.spec.env, **env}.items():
            args += ["--setenv", key, value]
        return [*args, "--", *argv]

    def _limits_prefix(self) -> list[str]:
        """A shell that joins the limit group, then prlimit for what cgroups cannot do here."""
        limits = [f"--fsize={self.spec.max_file_mb << 20}", "--core=0"]
        if not self.group.enforced.get("memory"):
            limits.append(f"--as={self.spec.memory_mb << 20}")
        if not self.group.enforced.get("pids"):
            limits.append(f"--nproc={self.spec.pids}")
        join = " ".join(f"echo $$ > {f};" for f in self.group.procs_files)
        prefix = ["/bin/sh", "-c", f'{join} exec {self._prlimit} {" ".join(limits)} -- "$@"', "m3lab-sandbox"]
        return prefix

    def _exec_workdir(self, workdir: str) -> str:
        return "/tmp" if self.spec.workspace is None and workdir == "/work" else workdir

    def _oom_count(self) -> int | None:
        return self.group.oom_count()

    def _after_agent_death(self) -> None:
        # The command killed the agent (or it stalled): drop the whole namespace, start afresh next time.
        self.group.kill_all()
        self._keep = set()

    def _run_fallback(self, argv: list[str], env: dict[str, str], workdir: str, timeout: float) -> ExecResult:
        return self._run(self._limits_prefix() + self._bwrap_argv(argv, env, workdir), timeout)

    def _run(self, full: list[str], timeout: float) -> ExecResult:
        oom_before = self.group.oom_count()
        out, err = TailBuffer(), TailBuffer()
        start = time.monotonic()
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={"PATH": DEFAULT_PATH}, start_new_session=True)
        readers = [threading.Thread(target=_pump, args=(s, b), daemon=True)
                   for s, b in ((proc.stdout, out), (proc.stderr, err))]
        for r in readers:
            r.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # bwrap dies; --die-with-parent takes its pid namespace down with it
            self.group.kill_all()
            code = proc.wait()
        for r in readers:
            r.join(timeout=5)
        duration = time.monotonic() - start
        oom = self.group.oom_count() > oom_before
        if code < 0:
            code = 128 - code
        return make_result(code, out, err, duration, timeout, oom)

    def _release(self) -> None:
        """Kill what is left, remove the limit group and the /tmp tmpfs."""
        self.group.remove()
        if getattr(self, "_agent_err", None) is not None:
            self._agent_err.unlink(missing_ok=True)
        if self.tmp_dir is not None:
            subprocess.run(["umount", "-l", str(self.tmp_dir)], capture_output=True)
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"ProcessSandbox({self.id})"


def _pump(stream: IO[bytes] | None, buf: TailBuffer) -> None:
    if stream is None:
        return
    fd = stream.fileno()
    for chunk in iter(lambda: os.read(fd, 65536), b""):  # whatever is there, without waiting for 64 KiB
        buf.write(chunk)
    stream.close()
