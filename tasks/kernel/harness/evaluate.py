"""The evaluator (parent process): holds the secret seed, computes references, compares, times, and prints the
verdict as `M3LAB-VERDICT <nonce> <json>`. The nonce is read from a file that is deleted before any candidate
code runs, so a candidate that writes to our stdout (or exits early) cannot produce an accepted verdict.

Stages: static -> (references start) -> compile (C++/CUDA extensions, own time limit) -> import -> quick check ->
full correctness -> timing -> roofline/flags -> compute-sanitizer (optional, CUDA).

Nothing trusted loads anything from the evaluation folder once candidate code may have run (its files are
writable by the candidate's user): every harness module is imported at start, the reference workers start (and
load the target) before the compile stage runs the candidate's module body, and the evaluator and the references
then take the folder off their import path. The folder itself is hashed before any candidate code runs and checked
again before each later process loads the candidate and at the end: a candidate that rewrites its files (or the
target, or the harness copy) is rejected. The evaluator is the subreaper of every process a worker starts."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import secrets
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .compare import compare_one, inputs_unchanged
from .extensions import NATIVE_SUFFIXES, arch_list, uses_extensions
from .options import (
    CANDIDATE_FILE,
    EXT_BUILD,
    LOG_DIR,
    NONCE_FILE,
    OPTIONS_FILE,
    TARGET_FILE,
    EvalOptions,
    OptionsError,
    load_options,
)
from .procs import WorkerConfig, WorkerFailed, WorkerHandle, children, live_children, set_subreaper, would_drop
from .protocol import Message
from .sanitize import run_sanitizers  # imported now: nothing is imported from the folder after candidate code ran
from .spec import (
    Target,
    TargetError,
    build_reference,
    flops,
    init_args,
    load_target,
    make_inputs,
    random_shape,
    resolved_shape,
    seal_import_path,
    set_shape,
    timing_shapes,
    tolerance,
)
from .static_checks import check_native, check_source, imported_helpers, native_texts
from .timing import CPU_SLACK, roofline_floor_ms, time_shape
from .verdict import ShapeTiming, Verdict


class _Stop(Exception):
    """Ends the staged evaluation early; the verdict already says why."""


def _outputs(model: torch.nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*[x.clone() for x in inputs])
    return list(out) if isinstance(out, (tuple, list)) else [out]


REFS = ("ref_a", "ref_b")
PRESTART_DEPTH = {"cuda": 2, "cpu": 1}
"""Pre-started candidate workers kept under way per warm evaluator. On the H200 host a start (python, torch,
CUDA) takes ~5-6 s and a pre-started evaluation of a 1 ms kernel ~4 s: two must be starting at once to keep up."""


@dataclass(frozen=True)
class Layout:
    """Where an evaluation folder (laid out by the runner) keeps things; `root` holds its harness/ copy too."""

    root: Path = Path(".")

    @property
    def target(self) -> Path:
        return self.root / TARGET_FILE

    @property
    def candidate(self) -> Path:
        return self.root / CANDIDATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.root / LOG_DIR

    @property
    def ext_build(self) -> Path:
        return self.root / EXT_BUILD


class WarmRefs:
    """The two reference workers, kept across the evaluations of one evaluator process (harness/serve.py): started
    from the evaluator's own folder (never an evaluation folder a candidate can write), at the evaluator's uid
    (a candidate runs as nobody: it cannot signal or trace them), replaced when one has died or the device or
    thread count changed. Every evaluation still re-initialises and re-times them (weights and inputs come from
    that evaluation's secret seed).

    Also the next candidates' pre-started workers (options.prestart): `PRESTART_DEPTH` processes started from the
    same folder while evaluations run (a start takes longer than a GPU evaluation, so two are under way there),
    with no candidate code and a home they cannot write. They are stopped (SIGSTOP) during the timed calls, so
    neither their imports nor their device set-up run beside one. The next evaluation resumes the oldest, pings it
    and hands it its candidate (`WorkerHandle.load`), or starts a fresh worker when it is gone, silent or started
    for other options. Each serves that one candidate and is closed with it, never reused."""

    def __init__(self, home: Layout) -> None:
        self.home = home
        self.handles: dict[str, WorkerHandle] = {}
        self.key: tuple = ()
        self.started = 0
        self.waiting: list[WorkerHandle] = []
        self.waiting_key: tuple = ()

    @staticmethod
    def _prestart_key(evaluation: Evaluation) -> tuple:
        cfg = evaluation.cfg
        return cfg.device, cfg.threads, cfg.drop_privileges, evaluation.cuda_arch

    def prestart(self, evaluation: Evaluation) -> None:
        """Top the waiting workers up to PRESTART_DEPTH[device]; nobody waits for them until `take`."""
        key = self._prestart_key(evaluation)
        if key != self.waiting_key:
            self.discard_waiting()
            self.waiting_key = key
        cfg = evaluation._worker_config("cand", self.home.target, "ModelNew", self.home)
        cfg = dataclasses.replace(cfg, prestart=True, cpus=None, ext_build=None, ext_cache=(),
                                  log_path=self.home.log_dir / "prestart.log",
                                  home=self.home.log_dir / "home_prestart")  # root's, read-only for nobody
        while len(self.waiting) < PRESTART_DEPTH[evaluation.cfg.device]:
            self.waiting.append(WorkerHandle(cfg, start_timeout_s=evaluation.cfg.start_timeout_s, wait=False))

    def pause(self, paused: bool) -> None:
        """Stop (or resume) the waiting workers: nothing of theirs runs beside a timed call."""
        for handle in self.waiting:
            handle.signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def take(self, evaluation: Evaluation, cfg: WorkerConfig) -> WorkerHandle | None:
        """The oldest waiting worker for this candidate, ready and answering (None: start a fresh one)."""
        if not self.waiting:
            return None
        handle = self.waiting.pop(0)
        if self.waiting_key != self._prestart_key(evaluation) or handle.dropped != would_drop(cfg):
            handle.close()
            return None
        return handle if handle.usable(evaluation.cfg.start_timeout_s) else None

    def discard_waiting(self) -> None:
        for handle in self.waiting:
            handle.close()
        self.waiting = []

    def get(self, evaluation: Evaluation) -> dict[str, WorkerHandle]:
        key = (evaluation.cfg.device, evaluation.cfg.threads, evaluation.cfg.start_timeout_s)
        if key != self.key or not self._answering() or any(h.tampering() for h in self.handles.values()):
            self.close()
            self.handles = {n: evaluation.start_worker(n, self.home.target, "Model", self.home) for n in REFS}
            for handle in self.handles.values():
                handle.wait_ready()
            self.key = key
            self.started += 1
        return self.handles

    def _answering(self) -> bool:
        """Both references answer a ping (a dying process may not have been reaped yet: poll() is not enough)."""
        try:
            for handle in self.handles.values():
                handle.request(Message({"cmd": "ping"}), 30.0)
        except WorkerFailed:
            return False
        return len(self.handles) == len(REFS)

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()
        self.handles = {}
        self.discard_waiting()


class Evaluation:
    def __init__(self, cfg: EvalOptions, layout: Layout = Layout(), warm: WarmRefs | None = None) -> None:
        self.cfg = cfg
        self.paths = layout
        self.warm = warm
        self.verdict = Verdict(device=cfg.device)
        self.rng = random.Random(secrets.randbits(63))  # the secret: never written anywhere a worker can read
        self.workers: dict[str, WorkerHandle] = {}
        self._target: Target | None = None
        self.cuda_arch = ""
        self._folder: dict[str, str] = {}

    @property
    def target(self) -> Target:
        """The target module, loaded by the first stage (every later stage runs after it)."""
        if self._target is None:
            raise RuntimeError("the target is read before it was loaded")
        return self._target

    def _worker_config(self, name: str, module: Path, cls: str, layout: Layout | None = None) -> WorkerConfig:
        cfg, paths = self.cfg, layout or self.paths
        candidate_side = name in ("cand", "compile", "sanitize")
        return WorkerConfig(module=module.resolve(), target=paths.target.resolve(), cls=cls, device=cfg.device,
                            threads=cfg.threads, eval_dir=paths.root.resolve(),
                            log_path=paths.log_dir / f"{name}.log", home=paths.log_dir / f"home_{name}",
                            drop_privileges=candidate_side and cfg.drop_privileges, reference=name in REFS,
                            cpus=None if name in ("compile", "sanitize") else self._cpus(),
                            ext_build=paths.ext_build if candidate_side else None,
                            ext_cache=(cfg.ext_cache,) if cfg.ext_cache else (),
                            compile_only=name == "compile", cuda_arch=self.cuda_arch)

    def start_worker(self, name: str, module: Path, cls: str, layout: Layout | None = None) -> WorkerHandle:
        return WorkerHandle(self._worker_config(name, module, cls, layout), start_timeout_s=self.cfg.start_timeout_s,
                            wait=False)

    def _worker(self, name: str, module: Path, cls: str, wait: bool = True,
                start_timeout_s: float | None = None) -> WorkerHandle:
        handle = self.start_worker(name, module, cls)
        self.workers[name] = handle
        if wait:
            handle.wait_ready(start_timeout_s)
        return handle

    def _cpus(self) -> frozenset[int] | None:
        """CPU timing: every worker on the same core (they never run at once); the evaluator keeps the rest."""
        if self.cfg.device != "cpu" or self.cfg.threads != 1:
            return None
        return frozenset({max(os.sched_getaffinity(0))})

    def run(self) -> Verdict:
        v = self.verdict
        start = time.monotonic()
        _kill(self._strays())  # (a warm evaluator) anything an earlier evaluation's candidate left: not this one's
        try:
            steps = [("setup", self._setup), ("static", self._static), ("references", self._start_references),
                     ("compile", self._compile), ("import", self._start_workers), ("correctness", self._correctness)]
            steps += [("timing", self._timing)] if self.cfg.timing else []
            for name, step in [*steps, ("sanitize", self._sanitize)]:
                began = time.monotonic()
                step()
                v.stage_s[name] = round(time.monotonic() - began, 3)
            v.stage = "done"
        except _Stop:
            pass
        except WorkerFailed as exc:  # its message says where the worker was
            v.errors.append(str(exc)[:3000])
        except TargetError as exc:
            v.errors.append(f"target: {exc}")
        except Exception as exc:  # a harness fault is an error verdict, never a pass
            v.errors.append(f"harness error at {v.stage}: {type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}")
        finally:
            self._finish_checks()
            for name, w in self.workers.items():
                if self.warm is None or name not in REFS:  # warm references stay for the next evaluation
                    w.close()
            v.eval_s = round(time.monotonic() - start, 3)
        if v.errors or v.cheats or v.failures:
            v.correct = v.correct and not v.failures
        return v

    def _setup(self) -> None:
        v = self.verdict
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        self._target = load_target(self.paths.target)
        if self.cfg.device not in self.target.meta.devices:
            v.errors.append(f"target supports {self.target.meta.devices}, not {self.cfg.device}")
            raise _Stop
        if self.cfg.device == "cuda":
            if not torch.cuda.is_available():
                v.errors.append("--device cuda but no CUDA device is visible")
                raise _Stop
            v.device_name = torch.cuda.get_device_name()
            self.cuda_arch = arch_list()
        else:
            v.device_name = f"cpu x{self.cfg.threads} thread(s)"
        torch.set_num_threads(self.cfg.threads)

    def _static(self) -> None:
        v = self.verdict
        v.stage = "static"
        self._folder = folder_state(self.paths.root)  # before any candidate code runs
        source = self.paths.candidate.read_text()
        report = check_source(source, self.target.meta.forbidden_ops)
        sources = [source]
        for helper in imported_helpers(source, self.paths.candidate.parent):
            sources.append(helper.read_text())
            sub = check_source(sources[-1], self.target.meta.forbidden_ops)
            report.cheats.extend(f"{helper.name}: {c}" for c in sub.cheats)
            report.warnings.extend(f"{helper.name}: {w}" for w in sub.warnings if "ModelNew" not in w)
        native = check_native(native_texts(sources, self.paths.candidate.parent, NATIVE_SUFFIXES))
        report.cheats.extend(native.cheats)
        report.warnings.extend(native.warnings)
        v.warnings.extend(report.warnings)
        if not self.cfg.static:
            v.warnings.extend(f"static check (disabled): {c}" for c in report.cheats)
        elif report.cheats:
            v.cheats.extend(f"static: {c}" for c in report.cheats)
            raise _Stop

    def _compile(self) -> None:
        """Build the candidate's C++/CUDA extensions once, as the candidate's user, under their own time limit;
        a build failure is a rejection carrying the compiler's first errors."""
        cfg, v = self.cfg, self.verdict
        cand = self.paths.candidate
        sources = [cand.read_text()] + [h.read_text() for h in imported_helpers(cand.read_text(), cand.parent)]
        if not uses_extensions("\n".join(sources), cand.parent):
            return
        v.stage = "compile"
        if not self.paths.ext_build.exists():  # (the runner creates it world-writable; a bare run gets one here)
            self.paths.ext_build.mkdir(parents=True)
            self.paths.ext_build.chmod(0o777)  # the candidate's user builds here
        start = time.monotonic()
        try:
            worker = self._worker("compile", self.paths.candidate, "ModelNew", start_timeout_s=cfg.compile_timeout_s)
        except WorkerFailed as exc:
            worker = self.workers["compile"]
            report = worker.hello.get("compile")
            v.compile = _compile_block(report, time.monotonic() - start)
            if report and report.get("errors"):
                first = "; ".join(f"{e['file']}:{e['line']}: {e['message']}" for e in report["errors"][:3])
                v.errors.append(f"compile: {first}\n{report.get('log_excerpt', '')}"[:3000])
            elif not worker.hello and time.monotonic() - start >= cfg.compile_timeout_s:
                v.errors.append(f"compile: the build did not finish within {cfg.compile_timeout_s:.0f} s "
                                f"(--compile-timeout); log tail: {worker.log_tail(600)}")
            else:
                v.errors.append(f"compile: {exc}"[:3000])
            raise _Stop from None
        worker.close()
        v.compile = _compile_block(worker.hello.get("compile"), time.monotonic() - start)
        v.warnings.extend(f"compiler warning: {w['file']}:{w['line']}: {w['message']}"
                          for w in (v.compile or {}).get("warnings", [])[:5])

    def _sanitize(self) -> None:
        cfg, v = self.cfg, self.verdict
        wanted = cfg.sanitize or (cfg.sanitize_above is not None and v.speedup is not None
                                  and v.speedup > cfg.sanitize_above and not v.cheats and not v.failures)
        if not wanted:
            return
        if cfg.device != "cuda":
            v.warnings.append("compute-sanitizer skipped: it checks CUDA kernels (device is cpu)")
            return
        v.stage = "sanitize"
        self._check_folder(stop=True)  # the sanitizer loads the candidate's files again: the ones checked
        wcfg = self._worker_config("sanitize", self.paths.candidate, "ModelNew")
        v.sanitizer = run_sanitizers(wcfg, self.target.meta.shapes[0], self.rng.getrandbits(62),
                                     cfg.sanitize_timeout_s)
        for tool, res in v.sanitizer.get("tools", {}).items():
            if not res.get("ok"):
                v.errors.append(f"compute-sanitizer {tool}: {res.get('report', '')}"[:2000])

    def _start_references(self) -> None:
        """Reference workers start before any candidate code runs (the compile stage runs the candidate's module
        body), and load all they need at start: nothing the candidate does afterwards can touch their code."""
        self.verdict.stage = "import"
        if self.cfg.timing and self.warm is not None:
            self.workers.update(self.warm.get(self))
        elif self.cfg.timing:
            refs = [self._worker(n, self.paths.target, "Model", wait=False) for n in REFS]
            for ref in refs:  # started together, both ready before any candidate code runs
                ref.wait_ready()

    def _start_workers(self) -> None:
        self.verdict.stage = "import"
        self._check_folder(stop=True)  # the compile stage ran candidate code: the files must be the ones checked
        cand = self._candidate_worker()
        if self.warm is not None and self.cfg.prestart:
            self.warm.prestart(self)  # the next candidate's process starts while this one is checked
        if not cand.dropped:
            self.verdict.warnings.append("candidate worker runs with the evaluator's uid (not root, or the interpreter "
                                         "is unreadable for nobody): isolation rests on the sandbox")

    def _candidate_worker(self) -> WorkerHandle:
        """A pre-started worker given this candidate (warm evaluators), else a freshly started one."""
        cfg = self._worker_config("cand", self.paths.candidate, "ModelNew")
        handle = self.warm.take(self, cfg) if self.warm is not None else None
        if handle is None:
            return self._worker("cand", self.paths.candidate, "ModelNew")
        self.workers["cand"] = handle
        handle.load(cfg, self.cfg.start_timeout_s)  # the candidate's import errors raise WorkerFailed, as fresh
        return handle

    def _init_shape(self, shape: dict[str, Any], names: list[str]) -> torch.nn.Module:
        set_shape(self.target, shape)
        args = init_args(self.target)
        ref = build_reference(self.target, args, self.rng.getrandbits(62), self.cfg.device)
        state = ref.state_dict()
        msg = Message({"cmd": "init", "init_args": args, "state_keys": list(state)}, list(state.values()))
        for name in names:
            try:
                self.workers[name].request(msg, self.cfg.call_timeout_s)
            except WorkerFailed as exc:
                raise WorkerFailed(f"building ModelNew{tuple(args)} with the reference's weights: {exc}") from None
        return ref

    def _shapes(self) -> list[dict[str, Any]]:
        meta = self.target.meta
        shapes = list(meta.shapes)
        hidden = random_shape(self.target, self.rng)
        if hidden is not None:
            shapes.append(hidden)  # drawn from the secret seed: no special-casing of known shapes
        shapes.extend(s for s in timing_shapes(self.target, self.cfg.device) if s not in shapes)
        return shapes

    def _correctness(self) -> None:
        v, cand = self.verdict, self.workers["cand"]
        for si, shape in enumerate(self._shapes()):
            v.stage = "quick" if si == 0 else "full"
            ref_model = self._init_shape(shape, ["cand"])
            for _trial in range(1 if si == 0 else self.target.meta.trials):
                inputs = make_inputs(self.target, self.rng.getrandbits(62), self.cfg.device)
                refs = _outputs(ref_model, inputs)
                reply = cand.request(Message({"cmd": "run", "trace": True}, inputs), self.cfg.call_timeout_s)
                self._judge_run(shape, reply, inputs, refs)
                v.checked_calls += 1
                if v.failures or v.cheats:
                    raise _Stop
        v.correct = True

    def _judge_run(self, shape: dict[str, Any], reply: Message, inputs: list[torch.Tensor],
                   refs: list[torch.Tensor]) -> None:
        v = self.verdict
        infos = reply.header.get("outputs")
        if not isinstance(infos, list) or len(infos) != len(refs) or len(reply.tensors) != len(refs) + len(inputs):
            v.failures.append(f"shape {shape}: returned {len(infos or [])} outputs, expected {len(refs)}")
            return
        for i, (out, info, ref) in enumerate(zip(reply.tensors, infos, refs, strict=False)):  # inputs follow
            atol, rtol = tolerance(self.target, ref.dtype)
            cmp = compare_one(out, info, ref, atol, rtol, self.cfg.device)
            v.max_rel_err = max(v.max_rel_err or 0.0, cmp.rel_l2_err)
            v.failures.extend(f"shape {shape}, output {i}: {p}" for p in cmp.problems)
        v.failures.extend(f"shape {shape}: {p}" for p in inputs_unchanged(inputs, reply.tensors[len(refs):]))
        ops = [str(o) for o in reply.header.get("ops", [])]
        for op in ops:
            if any(f.lower() in op.lower() for f in self.target.meta.forbidden_ops):
                v.cheats.append(f"dispatched the forbidden library op {op} (the reference op, not a new kernel)")

    def _timing(self) -> None:
        if self.warm is None:
            return self._timed_shapes()
        self.warm.pause(True)
        try:
            return self._timed_shapes()
        finally:
            self.warm.pause(False)

    def _timed_shapes(self) -> None:
        v, cfg = self.verdict, self.cfg
        v.stage = "timing"
        names = ["ref_a", "ref_b", "cand"]
        workers = {n: self.workers[n] for n in names}
        for shape in timing_shapes(self.target, cfg.device):
            ref_model = self._init_shape(shape, names)
            full_shape = resolved_shape(self.target, shape)
            last_bytes = [0.0]

            def next_case() -> tuple[int, list[torch.Tensor], list[torch.Tensor]]:
                seed = secrets.randbits(62)  # independent of the correctness seeds
                inputs = make_inputs(self.target, seed, cfg.device)
                refs = _outputs(ref_model, inputs)
                params = sum(p.numel() * p.element_size() for p in ref_model.state_dict().values())
                last_bytes[0] = params + sum(t.numel() * t.element_size() for t in inputs + refs)
                return seed, inputs, refs

            _, _, probe_refs = next_case()
            tols = [tolerance(self.target, r.dtype) for r in probe_refs]
            res = time_shape(workers, full_shape, next_case, tols, self.rng, cfg.warmup, cfg.iters,
                             self.cfg.call_timeout_s, self.target.meta.forbidden_ops, self._guard, self._cpus())
            if res.cheats:
                v.cheats.extend(res.cheats)
                raise _Stop
            if res.problems:
                v.failures.extend(res.problems)
                v.correct = False
                raise _Stop
            self._judge_timing(shape, res, roofline_floor_ms(flops(self.target), last_bytes[0], cfg.device,
                                                             v.device_name, cfg.threads))
        sp = [t.speedup for t in v.timings]
        v.speedup = math.exp(sum(math.log(s) for s in sp) / len(sp))  # geometric mean: no shape dominates
        v.ref_ms = sum(t.ref_ms for t in v.timings)
        v.cand_ms = sum(t.cand_ms for t in v.timings)
        v.aa_spread = max(abs(t.aa_ratio - 1.0) for t in v.timings)
        if v.speedup > 10:
            v.flags.append(f"speed-up {v.speedup:.1f}x > 10x: check the code by hand before trusting it")

    def _judge_timing(self, shape: dict[str, Any], res: Any, floor_ms: float) -> None:
        v = self.verdict
        v.timings.append(ShapeTiming(shape=shape, ref_ms=res.ref_ms, cand_ms=res.cand_ms, aa_ratio=res.aa_ratio,
                                     speedup=res.speedup, floor_ms=floor_ms, samples=res.samples))
        if res.cand_ms < floor_ms:
            v.cheats.append(f"shape {shape}: candidate time {res.cand_ms:.4g} ms is below the roofline floor "
                            f"{floor_ms:.4g} ms (physically impossible)")
        if res.stage_excess_ms > 0.1 * res.cand_ms:
            v.flags.append(f"shape {shape}: candidate spent {res.stage_excess_ms:.3g} ms more than the reference in "
                           "the untimed staging step (charged to its time)")
        cores = self._cores()
        for what, key in (("timed calls", "go"), ("turns (staging, call, check)", "turn")):
            used, wall = res.cpu.get(key, 0.0), res.cpu.get(f"{key}_wall", 0.0)
            if cores and used > wall * cores * CPU_SLACK + 0.002:
                v.cheats.append(f"candidate used {used * 1e3:.1f} ms of CPU in {wall * 1e3:.1f} ms of its {what}: more "
                                f"than the {cores} core(s) it is given (threads on other CPUs)")
                break
        if res.background_cpu_s > max(0.05, 0.05 * res.ref_window_s):
            v.cheats.append(f"candidate process used {res.background_cpu_s:.2f} s of CPU while the reference was "
                            "being timed (background work slowing the baseline)")

    def _cores(self) -> int | None:
        """CPU timing: the cores a worker may use (the timing core when pinned, else its threads); None on GPUs."""
        if self.cfg.device != "cpu":
            return None
        cpus = self._cpus()
        return len(cpus) if cpus else self.cfg.threads

    def _strays(self) -> list[int]:
        """Live processes the candidate started: the candidate worker's children, and any other child of ours (we
        are the subreaper: a double-forked or setsid helper ends up here) that is not one of our workers. Orphans
        that already ended are reaped."""
        known = {h.pid for h in self.workers.values()}
        if self.warm is not None:
            known |= {h.pid for h in [*self.warm.handles.values(), *self.warm.waiting]}
        found = live_children(os.getpid()) - known
        cand = self.workers.get("cand")
        if cand is not None and cand.proc.poll() is None:
            found |= live_children(cand.pid)
        for pid in {c for c, state in children(os.getpid()).items() if state == "Z"} - known:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        return sorted(found)

    def _guard(self) -> list[str]:
        """Between the candidate's turns in timing (it is stopped): no process of the candidate's may be running."""
        strays = self._strays()
        return [f"candidate started {len(strays)} process(es) still running while the references are timed"] \
            if strays else []

    def _check_folder(self, stop: bool = False) -> None:
        """The evaluation folder is as it was before any candidate code ran (logs and extension builds aside)."""
        if not self._folder:
            return
        now = folder_state(self.paths.root)
        changed = sorted(k for k in set(self._folder) | set(now) if self._folder.get(k) != now.get(k))
        if changed:
            self.verdict.cheats.append(f"candidate changed the evaluation folder ({', '.join(changed[:5])}): what "
                                       "runs or is checked after that would not be what was checked")
            self._folder = {}
            if stop:
                raise _Stop

    def _finish_checks(self) -> None:
        cand = self.workers.get("cand")
        if cand is not None and cand.proc.poll() is None:
            if cand.affinity_changed():
                self.verdict.cheats.append("candidate changed its CPU affinity (escaping the shared timing core)")
        extra = self._strays()
        if extra:
            self.verdict.cheats.append(f"candidate left {len(extra)} extra process(es) running")
            _kill(extra)  # a warm evaluator outlives this evaluation: they must not reach the next one
        self._check_folder()


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def folder_state(root: Path) -> dict[str, str]:
    """Every entry of the evaluation folder but the logs and extension builds: relative path -> a hash of a
    regular file's bytes, a link's target, or its kind. Links are never followed."""
    state: dict[str, str] = {}
    skip = {Path(LOG_DIR), Path(EXT_BUILD)}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if rel / d not in skip]
        for name in dirnames + filenames:
            path, key = Path(dirpath, name), str(rel / name)
            if path.is_symlink():
                state[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                state[key] = "dir"
            elif path.is_file():
                try:
                    state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
                except OSError:
                    state[key] = "unreadable"
            else:
                state[key] = "special"
    return state


def _compile_block(report: dict | None, wall_s: float) -> dict[str, Any]:
    """The verdict's `compile` block: wall seconds of the stage (process start and import included)."""
    block = dict(report or {"seconds": 0.0, "cached": False, "extensions": [], "errors": [], "warnings": [],
                            "log_excerpt": ""})
    block["stage_s"] = round(wall_s, 3)
    return block


def _read_nonce(path: Path | None) -> str:
    if path is None:
        return "-"
    nonce = path.read_text().strip()
    path.unlink()  # gone before any candidate code starts
    return nonce


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.evaluate` in a folder the runner laid out (options.json, nonce, target.py, cand/)."""
    nonce = _read_nonce(Path(NONCE_FILE))
    from .worker import _set_nondumpable

    _set_nondumpable()
    set_subreaper()
    seal_import_path(Path.cwd())  # everything is imported: nothing more may come from the evaluation folder
    try:
        opts = load_options(Path(OPTIONS_FILE))
    except OptionsError as exc:  # never a pass: the verdict says why
        verdict = Verdict(errors=[f"harness options: {exc}"])
    else:
        verdict = Evaluation(opts).run()
    sys.stdout.write(f"M3LAB-VERDICT {nonce} {json.dumps(verdict.to_json())}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
