"""Host side of one evaluation: lay out an evaluation folder (harness copy, pristine target, candidate), run the
evaluator in a fresh sandbox (or a plain subprocess for tests and GPU hosts without a sandbox), and read back the
verdict line tagged with a nonce only this process and the evaluator know."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sandboxes import hostfs
from sandboxes.base import Sandbox, SandboxSpec, inside_path
from tasks.kernel.harness.extensions import FAILED, MAX_FAILURE_BYTES
from tasks.kernel.harness.options import CANDIDATE_FILE, EXT_BUILD, NONCE_FILE, TARGET_FILE, EvalOptions, write_options
from tasks.kernel.harness.static_checks import syntax_error
from tasks.kernel.harness.verdict import Verdict

HARNESS_DIR = Path(__file__).resolve().parent / "harness"
EVAL_IMAGE = "m3lab/torch-cpu"
FORBIDDEN_FILES = ("sitecustomize.py", "usercustomize.py", "harness", "conftest.py")
"""Files Python (or pytest) runs by itself at start-up, or that shadow the harness: never copied next to a
candidate, and their presence in a kernel task's workspace is tampering."""
# Besides Python helper modules, the C++/CUDA sources a candidate may `load` from its own folder.
_HELPER_SUFFIXES = (".py", ".cu", ".cuh", ".cpp", ".cc", ".cxx", ".h", ".hpp")
_MAX_LIB_BYTES = 512 << 20


class EvalFailed(RuntimeError):
    """The evaluation could not run at all (sandbox failure, no verdict line)."""


def _over_quota(eval_dir: Path, disk_mb: int) -> str:
    """Why the candidate-written folder is over its quota ("" when it is not): its size, or that it cannot be
    measured (nested past hostfs.MAX_DEPTH, or unreadable)."""
    try:
        used = hostfs.disk_usage(eval_dir)
    except hostfs.UnsafePath as exc:
        return f"cannot be measured ({exc})"
    return f"held {used >> 20} MB" if used > disk_mb << 20 else ""


def prepare_eval_dir(eval_dir: Path, target: Path, candidate: Path) -> str:
    """Fresh folder: harness/, target.py, cand/<candidate + sibling helper modules>, nonce. Returns the nonce."""
    hostfs.remove_tree(eval_dir)  # an earlier evaluation's folder: candidate-written, nested however deep
    cand_dir = eval_dir / Path(CANDIDATE_FILE).parent
    cand_dir.mkdir(parents=True)
    shutil.copytree(HARNESS_DIR, eval_dir / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(target, eval_dir / TARGET_FILE)
    # The candidate's folder is sandbox-written: only regular files are copied, never through a link.
    folder = candidate.parent
    for rel, st in hostfs.listdir(folder):
        if rel.endswith(_HELPER_SUFFIXES) and rel not in (*FORBIDDEN_FILES, TARGET_FILE) \
                and rel != candidate.name and stat.S_ISREG(st.st_mode):
            hostfs.write_bytes(cand_dir, rel, hostfs.read_bytes(folder, rel))
    hostfs.write_bytes(cand_dir, Path(CANDIDATE_FILE).name, hostfs.read_bytes(folder, candidate.name))
    (eval_dir / EXT_BUILD).mkdir()
    nonce = secrets.token_hex(16)
    (eval_dir / NONCE_FILE).write_text(nonce)
    for p in [eval_dir, *eval_dir.rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)  # the sandbox user must delete the nonce and write logs
    return nonce


EVALUATOR_ARGS = ["-m", "harness.evaluate"]
"""The evaluator's command line: everything else is in the evaluation folder (options.json, nonce, files)."""


def toolchain_path(inside: Callable[[Path], str] = str) -> str:
    """PATH for evaluations that run the host's Python (subprocess mode, process sandbox): ninja from the running
    Python environment (the `ninja` wheel puts it next to python), nvcc and compute-sanitizer from CUDA_HOME,
    then the system compiler."""
    dirs: list[str] = []
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "ninja").exists():
        dirs.append(inside(bin_dir))
    cuda_home = Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda")
    if (cuda_home / "bin" / "nvcc").exists():
        dirs.append(inside(cuda_home / "bin"))
    return ":".join([*dirs, "/usr/local/bin", "/usr/bin", "/bin"])


def _prepare_cache(root: Path, digest: str) -> Path:
    """The candidate's part of the run's compile cache (`root/digest`): readable, never writable, by the
    sandbox user, who must also pass through `root`."""
    cache = root / digest
    cache.mkdir(parents=True, exist_ok=True)
    for folder in (root, cache):
        folder.chmod(0o755)
    return cache.resolve()


def harvest_builds(eval_dir: Path, cache: Path | None, verdict: Verdict) -> list[str]:
    """Copy the extensions the evaluation built into the run's cache. The sandbox wrote these bytes: only a
    regular file at the exact expected name is taken (no links followed, size bounded); they are only ever loaded
    inside later sandboxes, never on the host. Returns the keys added."""
    if cache is None or not verdict.compile:
        return []
    added = []
    for ext in verdict.compile.get("extensions", []):
        key, name = str(ext.get("key", "")), str(ext.get("name", ""))
        if ext.get("cached") or not re.fullmatch(r"[0-9a-f]{64}", key) \
                or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", name) or (cache / key).exists():
            continue
        if not ext.get("ok"):
            if _copy_regular(eval_dir, f"{EXT_BUILD}/{key}/{FAILED}", cache / key, FAILED,
                             max_bytes=MAX_FAILURE_BYTES, json_only=True):
                added.append(key)
        elif _copy_regular(eval_dir, f"{EXT_BUILD}/{key}/{name}.so", cache / key, f"{name}.so"):
            (cache / key / "complete").write_text(key)
            added.append(key)
    return added


def _copy_regular(root: Path, rel: str, dest_dir: Path, name: str, max_bytes: int = _MAX_LIB_BYTES,
                  json_only: bool = False) -> bool:
    """Copy the sandbox-written regular file root/rel (reached without following any link, at most `max_bytes`)."""
    try:
        data = hostfs.read_bytes(root, rel, max_bytes + 1)
    except OSError:  # hostfs.UnsafePath included: a link or a special file
        return False
    if len(data) > max_bytes:
        return False
    if json_only:
        try:
            json.loads(data)
        except ValueError:
            return False
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest_dir.chmod(0o755)
    tmp = dest_dir / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(dest_dir / name)
    return True


def candidate_digest(cand_dir: Path) -> str:
    """A hash of the candidate's files as the host copied them. The compile cache is kept per digest, so an
    evaluation can only ever seed builds for its own, identical sources: a candidate cannot plant a binary that
    a later, innocent-looking candidate would load."""
    digest = hashlib.sha256()
    for name, st in hostfs.listdir(cand_dir):
        if stat.S_ISREG(st.st_mode):
            digest.update(name.encode() + b"\0" + hostfs.read_bytes(cand_dir, name) + b"\0")
    return digest.hexdigest()[:32]


def parse_verdict(stdout: str, nonce: str) -> Verdict:
    """The LAST line carrying our nonce; anything else (no line, bad JSON) raises EvalFailed."""
    tag = f"M3LAB-VERDICT {nonce} "
    lines = [ln for ln in stdout.splitlines() if ln.startswith(tag)]
    if not lines:
        raise EvalFailed("the evaluator printed no verdict (crashed, killed, or timed out)")
    try:
        return Verdict.from_json(json.loads(lines[-1][len(tag):]))
    except (ValueError, TypeError, KeyError) as exc:
        raise EvalFailed(f"unparsable verdict: {exc}") from None


def _run_subprocess(eval_dir: Path, opts: EvalOptions, target: Path, nonce: str) -> tuple[int, str, str]:
    env = {"PATH": toolchain_path(), "HOME": str(eval_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    for key in ("CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "CUDA_HOME"):
        if key in os.environ:
            env[key] = os.environ[key]
    if opts.warm:
        from tasks.kernel.warm import POOL

        return POOL.run(target, opts.device, env, eval_dir, nonce, opts.total_timeout_s)
    try:
        proc = subprocess.run([sys.executable, *EVALUATOR_ARGS], cwd=eval_dir, env=env,
                              capture_output=True, text=True, timeout=opts.total_timeout_s)
    except subprocess.TimeoutExpired as exc:
        return 124, str(exc.stdout or ""), f"[{_ended('timeout', opts)}]"
    return proc.returncode, proc.stdout, proc.stderr


def sandbox_spec(workspace: Path, device: str, evaluation: EvalOptions | None = None,
                 cache: Path | None = None) -> SandboxSpec:
    """The kernel task's one sandbox recipe: the torch image, the host's Python read-only (the process backend runs
    it), the GPUs for cuda. `evaluation` None: the producer's workspace (Triton interpreted on CPU); else one
    evaluation's sandbox, sized by its options, with the candidate's part of the compile cache read-only."""
    spec = SandboxSpec(image=EVAL_IMAGE, workspace=workspace, memory_mb=8192, cpus=2.0, pids=512,
                       gpu=device == "cuda", host_paths=(Path(sys.prefix),))
    if evaluation is None:
        return dataclasses.replace(spec, env={"TRITON_INTERPRET": "1"} if device == "cpu" else {})
    timeout = evaluation.total_timeout_s
    return dataclasses.replace(spec, memory_mb=evaluation.memory_mb, disk_mb=evaluation.disk_mb,
                               exec_timeout_s=timeout, lifetime_s=timeout + 600,
                               env={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
                               host_paths=spec.host_paths + ((cache,) if cache else ()))


def _run_sandbox(eval_dir: Path, opts: EvalOptions, opener: Callable[[SandboxSpec], Sandbox] | None,
                 cache: Path | None) -> tuple[int, str, str]:
    if opener is None:
        from sandboxes import open_sandbox

        def opener(spec: SandboxSpec) -> Sandbox:
            return open_sandbox(spec, backend=opts.sandbox_backend)

    with opener(sandbox_spec(eval_dir, opts.device, opts, cache)) as sb:
        docker = sb.backend == "docker"
        python = "python3" if docker else inside_path(Path(sys.executable))
        # The image has its toolchain on PATH; the process sandbox runs the host's (seen under inside_path).
        env = None if docker else {"PATH": toolchain_path(lambda p: inside_path(p))}
        res = sb.exec(" ".join(shlex.quote(a) for a in [python, *EVALUATOR_ARGS]), timeout_s=opts.total_timeout_s,
                      env=env)
        return res.exit_code, res.stdout, res.stderr + (f"\n[{_ended(res.reason, opts)}]" if res.reason != "exited" else "")


def _ended(reason: str, opts: EvalOptions) -> str:
    """How the whole evaluator ended, in words, when it did not exit by itself."""
    if reason == "oom":
        return f"killed: out of memory (limit {opts.memory_mb / 1024:.3g} GiB)"
    if reason == "timeout":
        return f"timed out after {opts.total_timeout_s:g} s (the whole evaluation)"
    return reason


def evaluate_candidate(target: Path, candidate: Path, opts: EvalOptions, eval_dir: Path,
                       opener: Callable[[SandboxSpec], Sandbox] | None = None) -> Verdict:
    """Evaluate `candidate` against `target`; never raises for the candidate's own failures (they are in the
    verdict). Raises EvalFailed only when no verdict could be produced at all, with the evaluator's output."""
    if not target.is_file():
        raise FileNotFoundError(f"target file {target} " + ("is a folder" if target.is_dir() else "does not exist"))
    if not hostfs.is_regular(candidate.parent, candidate.name):
        raise FileNotFoundError(f"candidate file {candidate} " + ("is a folder" if candidate.is_dir() else
                                "does not exist or is not a regular file (links are not followed)"))
    source = hostfs.read_bytes(candidate.parent, candidate.name).decode("utf-8", errors="replace")
    problem = syntax_error(source, candidate.name)
    if problem is not None:  # no sandbox, no worker: the producer gets the line at once
        verdict = error_verdict(f"SyntaxError: {problem}", opts.device)
        verdict.stage = "import"  # the module cannot be imported: the same stage a worker would have failed at
        return verdict
    nonce = prepare_eval_dir(eval_dir, target, candidate)
    cand_dir = eval_dir / Path(CANDIDATE_FILE).parent
    cache = _prepare_cache(opts.ext_cache, candidate_digest(cand_dir)) if opts.ext_cache else None
    # The process sandbox and Docker show the cache under inside_path; the subprocess mode at its own path.
    write_options(eval_dir, opts, (str(cache) if opts.isolation == "subprocess" else inside_path(cache))
                  if cache else None)
    if opts.isolation == "subprocess":
        code, out, err = _run_subprocess(eval_dir, opts, target, nonce)
    else:
        code, out, err = _run_sandbox(eval_dir, opts, opener, cache)
    over = _over_quota(eval_dir, opts.disk_mb)
    if over:
        hostfs.remove_tree(eval_dir)  # the bytes that filled it go (at any depth); the log below says why
        eval_dir.mkdir()
        err += f"\n[quota] the evaluation folder {over}, over its quota of {opts.disk_mb} MB"
    (eval_dir / "evaluator.log").write_text(f"exit code {code}\n--- stdout\n{out[-20000:]}\n--- stderr\n{err[-20000:]}")
    if over:
        raise EvalFailed(f"the evaluation folder went over its disk quota of {opts.disk_mb} MB ({over})")
    try:
        verdict = parse_verdict(out, nonce)
    except EvalFailed as exc:
        ended = err.rstrip().rsplit("\n", 1)[-1] if err.rstrip().endswith("]") else ""
        raise EvalFailed(f"{exc}: {ended.strip('[]')}" if ended else
                         f"{exc}; exit code {code}; stderr tail: {err[-1500:]}") from None
    harvest_builds(eval_dir, cache, verdict)
    return verdict


def error_verdict(message: str, device: str) -> Verdict:
    """A verdict for an evaluation that produced none: an error, never a pass."""
    return Verdict(device=device, errors=[message])
