"""The evaluator (parent process): holds the secret seed, computes references, compares, times, and prints the
verdict as `M3LAB-VERDICT <nonce> <json>`. The nonce is read from a file that is deleted before any candidate
code runs, so a candidate that writes to our stdout (or exits early) cannot produce an accepted verdict.

Stages: static -> compile (C++/CUDA extensions, own time limit) -> import -> quick check -> full correctness ->
timing -> roofline/flags -> compute-sanitizer (optional, CUDA)."""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import secrets
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .compare import compare_one, inputs_unchanged
from .extensions import NATIVE_SUFFIXES, arch_list, uses_extensions
from .procs import WorkerConfig, WorkerFailed, WorkerHandle
from .protocol import Message
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
    set_shape,
    timing_shapes,
    tolerance,
)
from .static_checks import check_native, check_source, imported_helpers, native_texts
from .timing import roofline_floor_ms, time_shape
from .verdict import ShapeTiming, Verdict


@dataclass
class EvalConfig:
    target: Path
    candidate: Path
    device: str = "cpu"
    static: bool = True
    timing: bool = True
    warmup: int = 3
    iters: int = 20
    threads: int = 1
    log_dir: Path = Path("logs")
    drop_privileges: bool = True
    """Run the candidate worker as uid nobody when the evaluator is root (and the files allow it)."""
    call_timeout_s: float = 120.0
    """Longest one request to a worker may take (a hung candidate is killed after this)."""
    start_timeout_s: float = 300.0
    """Longest a worker's start (its imports, the candidate's module body) may take."""
    compile_timeout_s: float = 300.0
    """Time limit of the compile stage (building the candidate's extensions), on top of the others."""
    ext_build: Path = Path("ext-build")
    ext_cache: tuple[Path, ...] = ()
    """Read-only folders of earlier builds (the run's compile cache)."""
    sanitize: bool = False
    """Run compute-sanitizer (memcheck, racecheck) on the candidate at a small shape (CUDA only)."""
    sanitize_above: float | None = None
    """Also sanitize when the candidate is accepted with a speed-up above this (about to become the best)."""
    sanitize_timeout_s: float = 600.0


class _Stop(Exception):
    """Ends the staged evaluation early; the verdict already says why."""


def _outputs(model: torch.nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(*[x.clone() for x in inputs])
    return list(out) if isinstance(out, (tuple, list)) else [out]


class Evaluation:
    def __init__(self, cfg: EvalConfig) -> None:
        self.cfg = cfg
        self.verdict = Verdict(device=cfg.device)
        self.rng = random.Random(secrets.randbits(63))  # the secret: never written anywhere a worker can read
        self.workers: dict[str, WorkerHandle] = {}
        self.target: Target | None = None
        self.cuda_arch = ""

    def _worker_config(self, name: str, module: Path, cls: str) -> WorkerConfig:
        cfg = self.cfg
        candidate_side = name in ("cand", "compile", "sanitize")
        return WorkerConfig(module=module.resolve(), target=cfg.target.resolve(), cls=cls, device=cfg.device,
                            threads=cfg.threads, eval_dir=Path(__file__).resolve().parent.parent,
                            log_path=cfg.log_dir / f"{name}.log", home=cfg.log_dir / f"home_{name}",
                            drop_privileges=candidate_side and cfg.drop_privileges,
                            cpus=None if name in ("compile", "sanitize") else self._cpus(),
                            ext_build=cfg.ext_build if candidate_side else None, ext_cache=cfg.ext_cache,
                            compile_only=name == "compile", cuda_arch=self.cuda_arch)

    def _worker(self, name: str, module: Path, cls: str, wait: bool = True,
                start_timeout_s: float | None = None) -> WorkerHandle:
        handle = WorkerHandle(self._worker_config(name, module, cls), start_timeout_s=self.cfg.start_timeout_s,
                              wait=False)
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
        try:
            self._setup()
            self._static()
            self._compile()
            self._start_workers()
            self._correctness()
            if self.cfg.timing:
                self._timing()
            self._sanitize()
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
            for w in self.workers.values():
                w.close()
            v.eval_s = round(time.monotonic() - start, 3)
        if v.errors or v.cheats or v.failures:
            v.correct = v.correct and not v.failures
        return v

    def _setup(self) -> None:
        v = self.verdict
        self.cfg.log_dir.mkdir(parents=True, exist_ok=True)
        self.target = load_target(self.cfg.target)
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
        source = self.cfg.candidate.read_text()
        report = check_source(source, self.target.meta.forbidden_ops)
        sources = [source]
        for helper in imported_helpers(source, self.cfg.candidate.parent):
            sources.append(helper.read_text())
            sub = check_source(sources[-1], self.target.meta.forbidden_ops)
            report.cheats.extend(f"{helper.name}: {c}" for c in sub.cheats)
            report.warnings.extend(f"{helper.name}: {w}" for w in sub.warnings if "ModelNew" not in w)
        native = check_native(native_texts(sources, self.cfg.candidate.parent, NATIVE_SUFFIXES))
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
        sources = [cfg.candidate.read_text()] + [h.read_text() for h in imported_helpers(cfg.candidate.read_text(),
                                                                                            cfg.candidate.parent)]
        if not uses_extensions("\n".join(sources), cfg.candidate.parent):
            return
        v.stage = "compile"
        if not cfg.ext_build.exists():  # (the runner creates it world-writable; a bare harness run gets one here)
            cfg.ext_build.mkdir(parents=True)
            cfg.ext_build.chmod(0o777)  # the candidate's user builds here
        start = time.monotonic()
        try:
            worker = self._worker("compile", cfg.candidate, "ModelNew", start_timeout_s=cfg.compile_timeout_s)
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
        from .sanitize import run_sanitizers

        v.stage = "sanitize"
        wcfg = self._worker_config("sanitize", cfg.candidate, "ModelNew")
        v.sanitizer = run_sanitizers(wcfg, self.target.meta.shapes[0], self.rng.getrandbits(62),
                                     cfg.sanitize_timeout_s)
        for tool, res in v.sanitizer.get("tools", {}).items():
            if not res.get("ok"):
                v.errors.append(f"compute-sanitizer {tool}: {res.get('report', '')}"[:2000])

    def _start_workers(self) -> None:
        # Reference workers start first, so nothing the candidate does afterwards can touch their code.
        self.verdict.stage = "import"
        if self.cfg.timing:
            refs = [self._worker(n, self.cfg.target, "Model", wait=False) for n in ("ref_a", "ref_b")]
            for ref in refs:  # started together, both ready before any candidate code runs
                ref.wait_ready()
        cand = self._worker("cand", self.cfg.candidate, "ModelNew")
        if not cand.dropped:
            self.verdict.warnings.append("candidate worker runs with the evaluator's uid (not root, or the interpreter "
                                         "is unreadable for nobody): isolation rests on the sandbox")

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
            for trial in range(1 if si == 0 else self.target.meta.trials):
                inputs = make_inputs(self.target, self.rng.getrandbits(62), self.cfg.device)
                refs = _outputs(ref_model, inputs)
                reply = cand.request(Message({"cmd": "run", "trace": trial == 0}, inputs), self.cfg.call_timeout_s)
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
        v, cfg = self.verdict, self.cfg
        v.stage = "timing"
        names = ["ref_a", "ref_b", "cand"]
        workers = {n: self.workers[n] for n in names}
        for shape in timing_shapes(self.target, cfg.device):
            ref_model = self._init_shape(shape, names)
            full_shape = resolved_shape(self.target, shape)
            last_bytes = [0.0]

            def next_case() -> tuple[int, list[torch.Tensor]]:
                seed = secrets.randbits(62)  # independent of the correctness seeds
                inputs = make_inputs(self.target, seed, cfg.device)
                refs = _outputs(ref_model, inputs)
                params = sum(p.numel() * p.element_size() for p in ref_model.state_dict().values())
                last_bytes[0] = params + sum(t.numel() * t.element_size() for t in inputs + refs)
                return seed, refs

            _, probe_refs = next_case()
            tols = [tolerance(self.target, r.dtype) for r in probe_refs]
            res = time_shape(workers, full_shape, next_case, tols, self.rng, cfg.warmup, cfg.iters,
                             self.cfg.call_timeout_s)
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
        if res.background_cpu_s > max(0.05, 0.05 * res.ref_window_s):
            v.cheats.append(f"candidate process used {res.background_cpu_s:.2f} s of CPU while the reference was "
                            "being timed (background work slowing the baseline)")

    def _finish_checks(self) -> None:
        cand = self.workers.get("cand")
        if cand is not None and cand.proc.poll() is None:
            if cand.affinity_changed():
                self.verdict.cheats.append("candidate changed its CPU affinity (escaping the shared timing core)")
            extra = cand.descendants()
            if extra:
                self.verdict.cheats.append(f"candidate left {len(extra)} extra process(es) running")


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
    p = argparse.ArgumentParser(description="Evaluate a kernel candidate against a KernelBench-format target.")
    p.add_argument("--target", type=Path, required=True)
    p.add_argument("--candidate", type=Path, required=True)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--nonce-file", type=Path)
    p.add_argument("--no-static", action="store_true", help="skip static rejection (tests of the dynamic layer)")
    p.add_argument("--no-timing", action="store_true")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-dir", type=Path, default=Path("logs"))
    p.add_argument("--call-timeout", type=float, default=120.0)
    p.add_argument("--start-timeout", type=float, default=300.0)
    p.add_argument("--no-drop", action="store_true", help="keep the candidate worker at the evaluator's uid")
    p.add_argument("--compile-timeout", type=float, default=300.0)
    p.add_argument("--ext-build", type=Path, default=Path("ext-build"))
    p.add_argument("--ext-cache", type=Path, action="append", default=[])
    p.add_argument("--sanitize", action="store_true", help="compute-sanitizer memcheck + racecheck (CUDA)")
    p.add_argument("--sanitize-above", type=float, default=None,
                   help="sanitize when accepted with a speed-up above this (the run's best so far)")
    a = p.parse_args(argv)
    nonce = _read_nonce(a.nonce_file)
    from .worker import _set_nondumpable

    _set_nondumpable()
    cfg = EvalConfig(target=a.target, candidate=a.candidate, device=a.device, static=not a.no_static,
                     timing=not a.no_timing, warmup=a.warmup, iters=a.iters, threads=a.threads, log_dir=a.log_dir,
                     call_timeout_s=a.call_timeout, start_timeout_s=a.start_timeout, drop_privileges=not a.no_drop,
                     compile_timeout_s=a.compile_timeout, ext_build=a.ext_build, ext_cache=tuple(a.ext_cache),
                     sanitize=a.sanitize, sanitize_above=a.sanitize_above)
    verdict = Evaluation(cfg).run()
    sys.stdout.write(f"M3LAB-VERDICT {nonce} {json.dumps(verdict.to_json())}\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
