"""`PaperTask`: reproduce a paper. The producer builds a repository whose reproduce.sh regenerates the paper's
data, tables and figures; each check re-runs it in a fresh sandbox and grades the rubric from that re-run."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from sandboxes import hostfs
from sandboxes.base import SandboxSpec
from tasks.base import CheckContext, CheckReport, exec_fields
from tasks.paper.artifacts import PaperArtifacts
from tasks.paper.briefs import producer_brief, verifier_brief
from tasks.paper.bundle import Bundle, load_bundle
from tasks.paper.grading import Evidence, grade
from tasks.paper.ingest import ingest_pdf
from tasks.paper.reproduce import log_tail, run_reproduction
from tasks.paper.rubric import RubricNode, load_rubric, save_rubric
from tasks.paper.rubric_gen import fallback_rubric

STARTER_SCRIPT = """#!/usr/bin/env bash
# Regenerates every dataset, table (results/) and figure (figures/) of the paper from scratch.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p results figures
python3 reproduce.py
"""
OUTPUT_DIRS = ("results", "figures")
MAX_OUTPUT_BYTES = 20 * 1024 * 1024


@dataclass
class PaperTask:
    kind: ClassVar[str] = "paper"

    pdf: str
    """Absolute path of the paper PDF."""
    rubric: str | None = None
    """rubric.json to grade with (reviewed by the user); None: the deterministic rubric from the bundle."""
    score_target: float = 0.8
    reproduce_timeout_s: float = 1800.0
    image: str = "m3lab/default"
    memory_mb: int = 4096
    cpus: float = 1.0
    max_pages: int = 150
    gpu: bool = False
    """Expose the host's GPUs to the producer's sandbox and to the re-runs."""

    def params(self) -> dict[str, Any]:
        return asdict(self)

    def title(self) -> str:
        return f"reproduce {Path(self.pdf).name}"

    def _paper(self, run_dir: Path) -> tuple[Bundle, RubricNode]:
        """The bundle and the grading rubric, kept in the run's artifacts (made once; the producer cannot edit them)."""
        art = PaperArtifacts(run_dir)
        if not (art.bundle / "bundle.json").is_file():
            ingest_pdf(Path(self.pdf), art.bundle, max_pages=self.max_pages)
        bundle = load_bundle(art.bundle)
        if not art.source_rubric.is_file():
            rubric = load_rubric(Path(self.rubric)) if self.rubric else fallback_rubric(bundle)
            save_rubric(rubric, art.source_rubric)
        return bundle, load_rubric(art.source_rubric)

    def prepare_workspace(self, workspace: Path) -> None:
        # The run-directory contract puts the workspace at <run_dir>/workspace.
        bundle, rubric = self._paper(workspace.parent)
        paper = workspace / "paper"
        shutil.copytree(PaperArtifacts(workspace.parent).bundle, paper, dirs_exist_ok=True)
        shutil.copy2(self.pdf, paper / "paper.pdf")
        (paper / "results_contract.json").write_text(json.dumps(_contract(rubric), indent=1), encoding="utf-8")
        script = workspace / "reproduce.sh"
        if not script.exists():
            script.write_text(STARTER_SCRIPT, encoding="utf-8")
            script.chmod(0o755)

    def producer_brief(self) -> str:
        contract = _contract(load_rubric(Path(self.rubric))) if self.rubric else None
        return producer_brief(Path(self.pdf).name, self.reproduce_timeout_s, contract)

    def main_file(self) -> str | None:
        # Weak models answer with one bare Python block: it becomes reproduce.py, which reproduce.sh runs.
        return "reproduce.py"

    def sandbox_spec(self, workspace: Path) -> SandboxSpec:
        return SandboxSpec(image=self.image, workspace=workspace, memory_mb=self.memory_mb, cpus=self.cpus,
                           exec_timeout_s=self.reproduce_timeout_s, gpu=self.gpu)

    def check(self, ctx: CheckContext) -> CheckReport:
        _, rubric = self._paper(ctx.run_dir)
        art = PaperArtifacts(ctx.run_dir)
        work = art.iteration(ctx.iteration)
        work.mkdir(parents=True, exist_ok=True)
        spec = SandboxSpec(image=self.image, memory_mb=self.memory_mb, cpus=self.cpus, gpu=self.gpu,
                           run_id=ctx.run_dir.name)
        rep = run_reproduction(ctx.workspace, work, ctx.open_sandbox, self.reproduce_timeout_s, spec)
        tail = log_tail(rep, 2000)
        ctx.record(exec_fields("check", "bash reproduce.sh", rep.exit_code, rep.reason, rep.duration_s, tail, ""))
        grading = grade(rubric, Evidence(work / "repo", rep, art.bundle), ctx.judge, ctx.judge_prompt_chars)
        (work / "grades.json").write_text(json.dumps(grading.to_json(), indent=1), encoding="utf-8")
        _keep_outputs(work / "repo", rep.fresh, work / "outputs")
        try:
            hostfs.remove_tree(work / "repo")  # sandbox-written: nested however deep
        except OSError:
            pass
        failed = [g for g in grading.leaves if g.score < 1]
        # Most actionable first: the run itself, then numbers off target, then the judge's reasons.
        order = {"rule": 0, "numeric": 1, "judge": 2, "none": 3}
        findings = [f"{g.id}: {g.explanation}" for g in sorted(failed, key=lambda g: order.get(g.method, 4))]
        numeric = [g for g in grading.leaves if g.method == "numeric"]
        within = sum(g.score >= 1 for g in numeric)
        run_state = "reproduce.sh ok" if rep.ok else f"reproduce.sh {rep.reason} (exit {rep.exit_code})"
        by_cat = {c: grading.scores.get(c, 0.0) for c in ("code", "execution", "results")}
        return CheckReport(
            passed=rep.ok and grading.score >= self.score_target,
            score=grading.score,
            summary=(f"{run_state} in {rep.duration_s:.1f} s; rubric score {grading.score:.3f} "
                     f"(target {self.score_target}); {len(grading.leaves) - len(failed)}/{len(grading.leaves)} leaves met; "
                     f"{within}/{len(numeric)} numbers within tolerance; {grading.judge_calls} judge calls"),
            metrics={"score": grading.score, "reproduce_s": rep.duration_s, "timed_out": float(rep.timed_out),
                     "judge_calls": float(grading.judge_calls),
                     "fresh_files": float(len(rep.fresh)), **{f"score_{k}": v for k, v in by_cat.items()}},
            findings=findings[:40],
            evidence_path=(work / "grades.json").relative_to(ctx.run_dir).as_posix(),
        )

    def verifier_brief(self) -> str:
        return verifier_brief()

    def is_complete(self, report: CheckReport) -> bool:
        return report.passed and report.score >= self.score_target

    def on_iteration_end(self, run_dir: Path, iteration: int, report: CheckReport, accepted: bool,
                         parent: int | None = None) -> None:
        from tasks.paper.report import write_report

        write_report(run_dir)

    def report_section(self, run_dir: Path) -> str:
        from tasks.paper.report import write_report

        return write_report(run_dir)


def _contract(rubric: RubricNode) -> dict[str, Any]:
    """What the re-run must write: metric keys with their requirement sentence (which quotes the paper's printed
    value: it is in the paper anyway; tolerances stay with the grader), table and figure files."""
    metrics = {leaf.extra["metric"]: leaf.requirements for leaf in rubric.leaves() if "metric" in leaf.extra}
    files = sorted({o for leaf in rubric.leaves() for o in leaf.extra.get("outputs", [])}
                   | {leaf.extra["output"] for leaf in rubric.leaves() if "output" in leaf.extra})
    return {"metrics_file": "results/metrics.json", "metrics": metrics, "files": files}


def _keep_outputs(repo: Path, fresh: list[str], dest: Path) -> None:
    """Copy the re-run's fresh results/ and figures/ files for the report (size-capped)."""
    total = 0
    for rel in fresh:
        # The re-run's tree is sandbox-written: regular files only, reached without following a link.
        if rel.split("/", 1)[0] not in OUTPUT_DIRS or not hostfs.is_regular(repo, rel):
            continue
        total += hostfs.lstat(repo, rel).st_size
        if total > MAX_OUTPUT_BYTES:
            break
        dest.mkdir(parents=True, exist_ok=True)
        hostfs.write_bytes(dest, rel, hostfs.read_bytes(repo, rel, MAX_OUTPUT_BYTES), 0o644)
