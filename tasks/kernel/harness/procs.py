"""Starting, talking to and watching worker processes from the evaluator."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .protocol import Message, PeerTimeout, ProtocolError, recv, send

NOBODY = 65534
PHASES = {"start": "at import", "init": "in __init__", "run": "in forward", "stage": "staging timing inputs",
          "go": "in warm-up or a timed forward"}
"""Where a worker was when it failed, by the request it was answering (warm-up and timed calls are the same
request by design, so a worker cannot tell them apart, nor can this message)."""


class WorkerFailed(RuntimeError):
    """A worker could not start, crashed, timed out or answered with an error."""


@dataclass
class WorkerConfig:
    module: Path
    target: Path
    cls: str
    device: str
    threads: int
    eval_dir: Path
    log_path: Path
    home: Path
    drop_privileges: bool
    cpus: frozenset[int] | None = None
    """CPU affinity of the worker (CPU timing pins every worker to the same core, so none gets a quieter one)."""
    ext_build: Path | None = None
    """Where the worker builds C++/CUDA extensions (shared by the compile stage and the candidate worker)."""
    ext_cache: tuple[Path, ...] = ()
    """Read-only folders of earlier builds of this run (the compile cache)."""
    compile_only: bool = False
    """The compile stage: import the module (building its extensions), report, exit."""
    cuda_arch: str = ""
    """TORCH_CUDA_ARCH_LIST for the visible card: builds for this card only (faster, and the cache key)."""
    reference: bool = False
    """A reference worker (trusted): it loads everything at start and then takes the evaluation folder off its
    import path."""
    prestart: bool = False
    """Start before the candidate is known (module/target unused until `WorkerHandle.load`): python up, torch
    imported, the device initialised; `home` is then a folder the worker can read but not write."""


def _env(cfg: WorkerConfig) -> dict[str, str]:
    home = cfg.home.resolve()  # absolute: nvcc runs in the build folder and writes its temporaries to TMPDIR
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home), "TMPDIR": str(home), "TRITON_CACHE_DIR": str(home / "triton"),
        "TORCH_EXTENSIONS_DIR": str(home / "torch_extensions"),
        "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": str(cfg.threads),
        # glibc fills every malloc'd/freed block with garbage: uninitialised CPU reads see junk, not old results.
        "MALLOC_PERTURB_": "165", "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
        # Never give heap memory back to the OS: otherwise a worker that ran fewer calls (the references) pays page
        # faults on every call that one with a warmer heap (the candidate) does not: a systematic bias.
        "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
    }
    for key in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "CUDA_HOME", "TRITON_PTXAS_PATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    if cfg.device == "cpu":
        env["TRITON_INTERPRET"] = "1"  # Triton kernels run on CPU through the interpreter
    if cfg.cuda_arch:
        env["TORCH_CUDA_ARCH_LIST"] = cfg.cuda_arch
    return env


def _cgroup_value(*names: str, key: str | None = None) -> int | None:
    """A number from this process's cgroup (v2 first, then v1): a whole file, or one `key value` line."""
    for name in names:
        try:
            text = Path("/sys/fs/cgroup", name).read_text()
        except OSError:
            continue
        if key is None:
            return int(text) if text.strip().isdigit() else None
        for line in text.splitlines():
            if line.startswith(key + " ") and line.split()[1].isdigit():
                return int(line.split()[1])
    return None


def oom_kills() -> int | None:
    """How many processes the memory limit of our cgroup has killed so far (None where unreadable)."""
    return _cgroup_value("memory.events", "memory/memory.oom_control", key="oom_kill")


def memory_limit_text() -> str:
    """" (limit 8 GiB)" from our cgroup's memory limit, "" when there is none or it is unreadable."""
    limit = _cgroup_value("memory.max", "memory/memory.limit_in_bytes")
    if limit is None or limit >= 1 << 60:
        return ""
    return f" (limit {limit / 2**30:.3g} GiB)" if limit >= 1 << 30 else f" (limit {limit >> 20} MiB)"


def exit_text(code: int | None, oom_before: int | None) -> str:
    """What an exit code means, in words: "killed: out of memory (limit 8 GiB)", "killed by SIGSEGV"..."""
    if code is None:
        return "still running"
    if code >= 0:
        return f"exited with code {code}"
    after = oom_kills()
    if code == -signal.SIGKILL and after is not None and oom_before is not None and after > oom_before:
        return f"killed: out of memory{memory_limit_text()}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def candidate_traceback(text: str, module: Path) -> str:
    """The frames of a worker's traceback that lie in the candidate's own files, and the exception line;
    the harness frames around them say nothing to the candidate's author. The whole text when none match."""
    lines = str(text).rstrip().splitlines()
    if not lines:
        return ""
    folder = str(Path(module).resolve().parent)
    kept, keep = [], False
    for line in lines[1:-1]:
        if line.startswith('  File "'):
            keep = line[len('  File "'):].startswith(folder)
        if keep:
            kept.append(line)
    if not kept:
        return "\n".join(lines)[-1500:]
    return "\n".join([lines[0], *kept, lines[-1]])[-1500:]


def _stat(pid: int | str, tid: int | str | None = None) -> list[str] | None:
    """The fields of /proc/<pid>[/task/<tid>]/stat after the command name (state first); None when gone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        return Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu_seconds(pid: int) -> float:
    """CPU time of process `pid`, all its threads (ended ones too), from the kernel's per-process CPU clock
    (nanoseconds); /proc's clock ticks where that clock cannot be read; 0 when the process is gone."""
    try:
        return time.clock_gettime((~pid << 3) | 2)  # CPUCLOCK_SCHED of the whole process (clock_getcpuclockid)
    except OSError:
        fields = _stat(pid)
        try:
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") if fields else 0.0
        except (IndexError, ValueError):
            return 0.0


def children(pid: int) -> dict[int, str]:
    """The children of `pid` and their states ("Z": ended, not reaped yet), from /proc/<pid>/task/*/children, else
    from a scan of /proc."""
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.update(int(c) for c in (task / "children").read_text().split())
    except FileNotFoundError:  # no CONFIG_PROC_CHILDREN: scan
        for entry in Path("/proc").iterdir():
            fields = _stat(entry.name) if entry.name.isdigit() else None
            if fields and len(fields) > 1 and fields[1] == str(pid):
                found.add(int(entry.name))
    except OSError:
        return {}
    return {c: f[0] for c in found if (f := _stat(c))}


def live_children(pid: int) -> set[int]:
    """Children of `pid` that are still running (not zombies)."""
    return {c for c, state in children(pid).items() if state != "Z"}


def set_subreaper() -> None:
    """Become the child subreaper (PR_SET_CHILD_SUBREAPER): a process a worker starts and orphans (double fork,
    setsid) is re-parented to us, not to init, so it can never leave our process tree unseen."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _world_usable(path: Path) -> bool:
    """True when uid nobody can reach `path` (every parent searchable, the file itself readable)."""
    path = path.resolve()
    try:
        if not path.stat().st_mode & 0o004:
            return False
        return all(p.stat().st_mode & 0o001 for p in path.parents)
    except OSError:
        return False


def can_drop_privileges(*needed: Path) -> bool:
    """Running the candidate as nobody needs root, and an interpreter, stdlib and evaluation files nobody can read."""
    paths = [Path(sys.executable), Path(os.__file__), *needed]
    return os.geteuid() == 0 and all(_world_usable(p) for p in paths)


def would_drop(cfg: WorkerConfig) -> bool:
    """Whether a worker started with `cfg` runs as nobody."""
    return cfg.drop_privileges and can_drop_privileges(
        cfg.module, cfg.target, cfg.eval_dir / "harness" / "worker.py", cfg.eval_dir / "harness" / "protocol.py")


def worker_args(cfg: WorkerConfig) -> list[str]:
    """The worker's command line (`-s`: no user site-packages from a HOME the candidate's user may write)."""
    common = ["--device", cfg.device, "--threads", str(cfg.threads), "--parent-pid", str(os.getpid())]
    if cfg.prestart:
        return [sys.executable, "-s", "-m", "harness.worker", "--prestart", *common]
    return [sys.executable, "-s", "-m", "harness.worker", "--module", str(cfg.module), "--target", str(cfg.target),
            "--cls", cfg.cls, *common, *ext_args(cfg), *(["--reference"] if cfg.reference else [])]


def pin_threads(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of `pid` onto `cpus` (sched_setaffinity of a pid moves its main thread only)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except (ProcessLookupError, ValueError):
            pass


def ext_args(cfg: WorkerConfig) -> list[str]:
    if cfg.ext_build is None:
        return []
    args = ["--ext-build", str(cfg.ext_build.resolve())]
    for cache in cfg.ext_cache:
        args += ["--ext-cache", str(cache)]
    return args + (["--compile-only"] if cfg.compile_only else [])


class WorkerHandle:
    def __init__(self, cfg: WorkerConfig, start_timeout_s: float = 300.0, wait: bool = True) -> None:
        self.cfg = cfg
        self.hello: dict = {}
        cfg.home.mkdir(parents=True, exist_ok=True)
        child_in, self._to_child = os.pipe()
        self._from_child, child_out = os.pipe()
        self._log = open(cfg.log_path, "ab")
        extra: dict = {}
        self.dropped = would_drop(cfg)
        if self.dropped:
            # Another uid than the evaluator and the reference workers: no signals, ptrace or /proc/<pid>/mem on them.
            if not cfg.prestart:  # a pre-started worker gets its writable home with its candidate (`load`)
                os.chown(cfg.home, NOBODY, NOBODY)
            extra = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        self.proc = subprocess.Popen(
            [*worker_args(cfg), "--fd-in", str(child_in), "--fd-out", str(child_out)],
            cwd=cfg.eval_dir, env=_env(cfg), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            pass_fds=(child_in, child_out), start_new_session=True, **extra,
        )
        os.close(child_in)
        os.close(child_out)
        if cfg.cpus:
            os.sched_setaffinity(self.proc.pid, cfg.cpus)  # before the worker starts any thread
        self._oom_before = oom_kills()
        self.start_timeout_s = start_timeout_s
        # What the worker inherited from us: anything else later was done to it (see `tampering`).
        self._cpus = set(cfg.cpus) if cfg.cpus else os.sched_getaffinity(0)
        self._sched = (str(os.getpriority(os.PRIO_PROCESS, 0)), str(os.sched_getscheduler(0)))
        if wait:
            self.wait_ready()

    def wait_ready(self, start_timeout_s: float | None = None) -> None:
        """Wait for the worker's hello (its imports done); raises WorkerFailed with the import error."""
        hello = self._recv(start_timeout_s or self.start_timeout_s, "start")
        self.hello = hello.header
        if not hello.header.get("ok"):
            self.close()
            raise WorkerFailed(self._raised(hello, "start"))

    def signal(self, sig: signal.Signals) -> None:
        try:
            os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def usable(self, timeout_s: float) -> bool:
        """A pre-started worker is running (SIGCONT undoes any stop: the evaluator's during timed calls, or one sent
        by a candidate of the same uid), ready (its hello within `timeout_s`) and answers a ping; False (and
        closed) otherwise: killed, crashed or silent."""
        self.signal(signal.SIGCONT)
        try:
            if not self.hello:
                self.wait_ready(timeout_s)
            self.request(Message({"cmd": "ping"}), 10.0)
        except WorkerFailed:
            self.close()
            return False
        return True

    def load(self, cfg: WorkerConfig, start_timeout_s: float) -> None:
        """Hand a pre-started worker (ready, pinged) its one candidate: the candidate's folder, environment paths
        and log, as a fresh start with `cfg` would have had them; then wait for its hello like `wait_ready`.
        The worker's uid must be the one `cfg` asks for (the caller checked `dropped`)."""
        cfg.home.mkdir(parents=True, exist_ok=True)
        with open(cfg.log_path, "ab"):
            pass
        if self.dropped:
            for path in (cfg.home, cfg.log_path):
                os.chown(path, NOBODY, NOBODY)
        if cfg.cpus:
            pin_threads(self.pid, cfg.cpus)  # it is idle, blocked on its pipe: no thread is being created
        self.cfg = cfg
        env = _env(cfg)
        self.send(Message({"cmd": "load", "module": str(cfg.module), "target": str(cfg.target), "cls": cfg.cls,
                           "cwd": str(cfg.eval_dir), "log": str(cfg.log_path.resolve()), "env": env,
                           "ext_build": str(cfg.ext_build.resolve()) if cfg.ext_build else None,
                           "ext_cache": [str(c) for c in cfg.ext_cache]}))
        self.wait_ready(start_timeout_s)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _raised(self, reply: Message, what: str) -> str:
        """A worker's error reply as one line (what it raised, where) and the candidate's frames, once."""
        where = PHASES.get(what, f"during {what}")
        tb = candidate_traceback(str(reply.header.get("traceback", "")), self.cfg.module)
        return f"{self.cfg.cls} raised {where}: {reply.header.get('error')}\n{tb}"

    def _recv(self, timeout_s: float, what: str) -> Message:
        where = PHASES.get(what, f"during {what}")
        try:
            return recv(self._from_child, timeout_s)
        except PeerTimeout:
            self.close()
            raise WorkerFailed(f"{self.cfg.cls} timed out after {timeout_s:g} s {where}") from None
        except ProtocolError as exc:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            how = exit_text(code, self._oom_before) if code is not None else str(exc)
            self.close()
            tail = self.log_tail(500).strip()
            raise WorkerFailed(f"{self.cfg.cls} {how} {where}" + (f"; its output: {tail}" if tail else "")) from None

    def send(self, msg: Message) -> None:
        try:
            send(self._to_child, msg)
        except OSError as exc:
            self.close()
            raise WorkerFailed(f"{self.cfg.cls} worker is gone ({exc}); log tail: {self.log_tail()}") from None

    def request(self, msg: Message, timeout_s: float) -> Message:
        self.send(msg)
        reply = self._recv(timeout_s, str(msg.header.get("cmd")))
        if not reply.header.get("ok"):
            raise WorkerFailed(self._raised(reply, str(msg.header.get("cmd"))))
        return reply

    def request_raw(self, frame: bytes, timeout_s: float, what: str) -> Message:
        """Like `request`, for a frame encoded once and sent to several workers."""
        try:
            view = memoryview(frame)
            while view:
                view = view[os.write(self._to_child, view):]
        except OSError as exc:
            self.close()
            raise WorkerFailed(f"{self.cfg.cls} worker is gone ({exc}); log tail: {self.log_tail()}") from None
        reply = self._recv(timeout_s, what)
        if not reply.header.get("ok"):
            raise WorkerFailed(self._raised(reply, what))
        return reply

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.cfg.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """CPU time of the worker, all its threads (ended ones too), in nanosecond resolution; 0 when gone."""
        return process_cpu_seconds(self.pid)

    def stop_group(self, timeout_s: float = 2.0) -> None:
        """SIGSTOP the worker's process group (it is a session leader: its threads and the children it did not move
        elsewhere) and wait until the worker itself is stopped (or gone). A stopped process runs nothing: no
        thread, no signal to another process, no new GPU launch."""
        try:
            os.killpg(self.pid, signal.SIGSTOP)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fields = _stat(self.pid)
            if fields is None or fields[0] in "TtZX":
                return
            time.sleep(0.0002)

    def resume_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass

    def thread_runs(self) -> dict[str, tuple[int, int, int]]:
        """Each thread's CPU time so far (ns, /proc schedstat), the CPU it last ran on, and how many times the
        scheduler moved it between CPUs (se.nr_migrations of /proc sched; -1 where the kernel does not show it)."""
        found = {}
        try:
            tids = [t.name for t in Path(f"/proc/{self.pid}/task").iterdir()]
        except OSError:
            return {}
        for tid in tids:
            task = Path(f"/proc/{self.pid}/task/{tid}")
            fields = _stat(self.pid, tid)
            try:
                ran = int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
            moved = -1
            try:
                for line in (task / "sched").read_text().splitlines():
                    if line.startswith("se.nr_migrations"):
                        moved = int(line.split(":")[1])
            except (OSError, IndexError, ValueError):
                pass
            found[tid] = (ran, int(fields[36]) if fields and len(fields) > 36 else -1, moved)
        return found

    def tampering(self) -> list[str]:
        """What someone else did to this (reference) worker: stopped it, moved a thread off its CPUs, changed a
        thread's priority or scheduling policy (a candidate with the same uid can do all of these)."""
        found: set[str] = set()
        try:
            tids = [t.name for t in Path(f"/proc/{self.pid}/task").iterdir()]
        except OSError:
            return []
        for tid in tids:
            fields = _stat(self.pid, tid)
            if fields is None or len(fields) < 39:
                continue
            if fields[0] in "Tt":
                found.add("stopped (SIGSTOP or a tracer)")
            if (fields[16], fields[38]) != self._sched:
                found.add(f"priority/scheduling policy changed to nice {fields[16]}, policy {fields[38]}")
            try:
                if os.sched_getaffinity(int(tid)) != self._cpus:
                    found.add("moved to other CPUs")
            except OSError:
                pass
        return sorted(found)

    def affinity_changed(self) -> bool:
        """True when the worker moved any of its threads off the CPUs it was given."""
        if not self.cfg.cpus:
            return False
        try:
            return any(os.sched_getaffinity(int(t.name)) != set(self.cfg.cpus)
                       for t in Path(f"/proc/{self.pid}/task").iterdir())
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    send(self._to_child, Message({"cmd": "quit"}))
                    self.proc.wait(timeout=2)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything the worker left behind in its group
        except (ProcessLookupError, PermissionError):
            pass
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._to_child = self._from_child = -1
        self._log.close()
