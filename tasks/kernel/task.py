"""KernelTask: optimise a KernelBench-format target; the check is the evaluation harness in a fresh sandbox."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sandboxes import hostfs
from sandboxes.base import SandboxError, SandboxSpec
from tasks.base import CheckContext, CheckReport
from tasks.kernel import briefs, database
from tasks.kernel.harness.spec import read_meta_static
from tasks.kernel.harness.verdict import Verdict
from tasks.kernel.runner import (
    FORBIDDEN_FILES,
    EvalFailed,
    EvalOptions,
    error_verdict,
    evaluate_candidate,
    sandbox_spec,
)
from tasks.kernel.targets import resolve_target

CANDIDATE = "candidate.py"
TARGET = "target.py"


class KernelTaskError(ValueError):
    """Bad kernel-task parameters (unknown target, unsupported device)."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class KernelTask:
    kind: ClassVar[str] = "kernel"

    target: str
    """Bundled target name (softmax, layernorm, matmul_bias_gelu, fp8_gemm) or a path to a target file."""
    device: str = "cpu"
    target_speedup: float | None = None
    """Stop (succeed) once an accepted candidate reaches this verified speed-up; None runs to budget."""
    isolation: str = "sandbox"
    """`sandbox` (fresh sandbox per check) or `subprocess` (GPU hosts without a GPU-enabled sandbox, tests)."""
    options: EvalOptions = field(default_factory=EvalOptions)
    """Settings and limits of every check (timing, timeouts, memory); device, isolation, the compile cache and the
    sanitizer threshold are set per check from this task and its run."""
    sanitize_best: bool = True
    """CUDA: run compute-sanitizer on a candidate about to become the run's best (accepted, faster than the best)."""
    target_sha256: str = ""
    """Hash of the target when the run started: a resumed run refuses a target that changed since."""

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise KernelTaskError(f"device must be cpu or cuda, not {self.device!r}")
        if self.isolation not in ("sandbox", "subprocess"):
            raise KernelTaskError(f"isolation must be sandbox or subprocess, not {self.isolation!r}")
        options: EvalOptions | dict[str, Any] = self.options
        if isinstance(options, dict):  # from params(): validated like options read from a file
            options = EvalOptions.from_json(options)
        self.options = dataclasses.replace(options, device=self.device, isolation=self.isolation)  # type: ignore[arg-type]  # both checked just above
        path = resolve_target(self.target)
        self.target = str(path)
        meta = read_meta_static(path)
        if self.device not in meta.get("devices", ["cpu", "cuda"]):
            raise KernelTaskError(f"target {path.name} runs on {meta['devices']}, not {self.device}")
        self.target_sha256 = self.target_sha256 or _sha256(path)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> KernelTask:
        """Runs started before the options had one declaration kept them as flat keys: folded in on resume."""
        flat = {k: params[k] for k in ("iters", "warmup", "threads", "timeout_s", "compile_timeout_s") if k in params}
        rest = {k: v for k, v in params.items() if k not in flat and k != "options"}
        options: Any = {**params.get("options", {}), **flat}  # __post_init__ validates the dict form
        return cls(**rest, options=options)

    def params(self) -> dict[str, Any]:
        return {"target": self.target, "device": self.device, "target_speedup": self.target_speedup,
                "isolation": self.isolation, "options": self.options.to_json(), "sanitize_best": self.sanitize_best,
                "target_sha256": self.target_sha256}

    def title(self) -> str:
        goal = f", goal {self.target_speedup:g}x" if self.target_speedup else ""
        return f"kernel: speed up {Path(self.target).name} on {self.device}{goal}"

    def _pristine(self) -> Path:
        path = Path(self.target)
        if _sha256(path) != self.target_sha256:
            raise KernelTaskError(f"{path} changed since the run started (sha256 mismatch); restore it")
        return path

    def prepare_workspace(self, workspace: Path) -> None:
        source = self._pristine().read_text()
        (workspace / TARGET).write_text(source)
        # Start from the reference itself renamed: correct, speed-up ~1, and the producer sees the structure.
        starter = re.sub(r"\bclass Model\b", "class ModelNew", source)
        (workspace / CANDIDATE).write_text(starter)

    def producer_brief(self) -> str:
        path = self._pristine()
        meta = read_meta_static(path)
        return briefs.producer_brief(path.stem, path.read_text(), self.device, meta.get("forbidden_ops", []),
                                     self.target_speedup)

    def main_file(self) -> str | None:
        return CANDIDATE

    def sandbox_spec(self, workspace: Path) -> SandboxSpec:
        return sandbox_spec(workspace, self.device)

    def _options(self, run_dir: Path) -> EvalOptions:
        best = database.best(run_dir)
        sanitize_above = (best.speedup if best else 0.0) if self.device == "cuda" and self.sanitize_best else None
        return dataclasses.replace(self.options, sanitize_above=sanitize_above,
                                   ext_cache=run_dir / "logs" / "kernel" / "ext-cache")

    def _tampering(self, workspace: Path) -> list[str]:
        found = []
        try:
            edited = hashlib.sha256(hostfs.read_bytes(workspace, TARGET)).hexdigest() != self.target_sha256
        except (OSError, ValueError):
            edited = True  # missing, or a link (never followed)
        if edited:
            found.append(f"{TARGET} in the workspace was edited or removed (the pristine target was used)")
        found.extend(f"workspace contains {name}: start-up hooks and harness shadows are not allowed"
                     for name in FORBIDDEN_FILES if os.path.lexists(workspace / name))
        return found

    def _evaluate(self, ctx: CheckContext) -> tuple[Verdict, str]:
        candidate = ctx.workspace / CANDIDATE
        if not hostfs.is_regular(ctx.workspace, CANDIDATE):
            return error_verdict(f"{CANDIDATE} is missing from the workspace or is not a regular file (a symbolic "
                                 "link is never followed)", self.device), ""
        eval_dir = Path(ctx.run_dir) / "logs" / "kernel" / f"eval-{ctx.iteration:04d}"
        opener = ctx.open_sandbox if self.isolation == "sandbox" else None
        try:
            options = self._options(Path(ctx.run_dir))
            if ctx.offload is not None:  # on a cluster: a task sized for one evaluation, in that node's sandbox
                verdict = ctx.offload(evaluate_candidate, self._pristine(), candidate, options, eval_dir,
                                      None, gpu=self.device == "cuda")
            else:
                verdict = evaluate_candidate(self._pristine(), candidate, options, eval_dir, opener)
        except (EvalFailed, SandboxError, OSError) as exc:
            verdict = error_verdict(f"evaluation failed: {exc}", self.device)
        return verdict, hostfs.read_bytes(ctx.workspace, CANDIDATE).decode("utf-8", errors="replace")

    def check(self, ctx: CheckContext) -> CheckReport:
        verdict, source = self._evaluate(ctx)
        tampered = self._tampering(ctx.workspace)
        verdict.cheats.extend(tampered)
        evidence = database.save_evidence(Path(ctx.run_dir), ctx.iteration, verdict.to_json(), source)
        metrics = {k: float(v) for k, v in (("speedup", verdict.speedup), ("ref_ms", verdict.ref_ms),
                                            ("cand_ms", verdict.cand_ms), ("aa_spread", verdict.aa_spread),
                                            ("max_rel_err", verdict.max_rel_err), ("eval_s", verdict.eval_s))
                   if v is not None}
        findings = ([f"cheat: {c}" for c in verdict.cheats] + [f"wrong: {f}" for f in verdict.failures]
                    + [f"error: {e}" for e in verdict.errors] + [f"flag: {f}" for f in verdict.flags]
                    + [f"warning: {w}" for w in verdict.warnings])
        return CheckReport(passed=verdict.accepted, score=verdict.score, summary=self._summary(ctx, verdict),
                           metrics=metrics, findings=findings, evidence_path=str(evidence.relative_to(ctx.run_dir)))

    def _summary(self, ctx: CheckContext, verdict: Verdict) -> str:
        lines = [verdict.summary()]
        for t in verdict.timings:
            lines.append(f"  shape {t.shape}: ref {t.ref_ms:.4g} ms, candidate {t.cand_ms:.4g} ms, "
                         f"speed-up {t.speedup:.3f}x, A/A {t.aa_ratio:.3f}, roofline floor {t.floor_ms:.3g} ms")
        best = database.best(Path(ctx.run_dir))
        lines.append(f"best so far: {best.speedup:.3f}x (iteration {best.iteration})" if best
                     else "best so far: none accepted yet")
        return "\n".join(lines)

    def verifier_brief(self) -> str:
        return briefs.verifier_brief()

    def is_complete(self, report: CheckReport) -> bool:
        return bool(self.target_speedup) and report.passed and report.score >= float(self.target_speedup or 0)

    def on_iteration_end(self, run_dir: Path, iteration: int, report: CheckReport, accepted: bool,
                         parent: int | None = None) -> None:
        database.record_iteration(Path(run_dir), iteration, accepted and report.passed, parent)

    def report_section(self, run_dir: Path) -> str:
        run_dir = Path(run_dir)
        table = database.load_table(run_dir)
        best = database.best(run_dir)
        head = (f"**Best verified speed-up: {best.speedup:.3f}x** (iteration {best.iteration}: candidate "
                f"{best.cand_ms:.4g} ms vs reference {best.ref_ms:.4g} ms); code in `artifacts/kernel/best/`."
                if best else "**No candidate was accepted.**")
        lines = [f"### Kernel search: {Path(self.target).name} on {self.device}", "", head, "",
                 f"{len(table)} candidates evaluated, {int(table['correct'].astype(bool).sum()) if len(table) else 0}"
                 " correct.", ""]
        if (database.kernel_dir(run_dir) / "best_speedup.png").is_file():
            lines += ["![best speed-up](artifacts/kernel/best_speedup.png)", ""]
        return "\n".join(lines)

