"""Starting, talking to and watching worker processes from the evaluator."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .protocol import Message, ProtocolError, recv, send

NOBODY = 65534


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
        self.dropped = cfg.drop_privileges and can_drop_privileges(
            cfg.module, cfg.target, cfg.eval_dir / "harness" / "worker.py", cfg.eval_dir / "harness" / "protocol.py")
        if self.dropped:
            # Another uid than the evaluator and the reference workers: no signals, ptrace or /proc/<pid>/mem on them.
            os.chown(cfg.home, NOBODY, NOBODY)
            extra = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.worker", "--module", str(cfg.module), "--target", str(cfg.target), "--cls", cfg.cls,
             "--device", cfg.device, "--threads", str(cfg.threads), "--fd-in", str(child_in),
             "--fd-out", str(child_out), *ext_args(cfg)],
            cwd=cfg.eval_dir, env=_env(cfg), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            pass_fds=(child_in, child_out), start_new_session=True, **extra,
        )
        os.close(child_in)
        os.close(child_out)
        if cfg.cpus:
            os.sched_setaffinity(self.proc.pid, cfg.cpus)  # before the worker starts any thread
        if wait:
            self.wait_ready(start_timeout_s)

    def wait_ready(self, start_timeout_s: float = 300.0) -> None:
        """Wait for the worker's hello (its imports done); raises WorkerFailed with the import error."""
        hello = self._recv(start_timeout_s, "start")
        self.hello = hello.header
        if not hello.header.get("ok"):
            self.close()
            raise WorkerFailed(f"import failed: {hello.header.get('error')}\n{hello.header.get('traceback', '')}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _recv(self, timeout_s: float, what: str) -> Message:
        try:
            return recv(self._from_child, timeout_s)
        except ProtocolError as exc:
            code = self.proc.poll()
            self.close()
            raise WorkerFailed(f"{self.cfg.cls} worker failed during {what}: {exc}"
                               f"{'' if code is None else f' (exit code {code})'}; log tail: {self.log_tail()}") from None

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
            raise WorkerFailed(f"{reply.header.get('error')}\n{str(reply.header.get('traceback', ''))[-1500:]}")
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
            raise WorkerFailed(f"{reply.header.get('error')}\n{str(reply.header.get('traceback', ''))[-1500:]}")
        return reply

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.cfg.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """utime + stime of the worker (all its threads), from /proc; 0 when unreadable."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def affinity_changed(self) -> bool:
        """True when the worker moved any of its threads off the CPUs it was given."""
        if not self.cfg.cpus:
            return False
        try:
            return any(os.sched_getaffinity(int(t.name)) != set(self.cfg.cpus)
                       for t in Path(f"/proc/{self.pid}/task").iterdir())
        except (OSError, ValueError):
            return False

    def descendants(self) -> list[int]:
        """Other live processes in the worker's process group (it was started as a session leader)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.pid:
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.pid or int(fields[1]) == self.pid:
                found.append(int(entry.name))
        return found

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
