"""Builds run directories the way the spine writes them (orchestrator/README.md contract), for the viewer's
tests: run.json, events.jsonl, iterations/NNNN.json, the run's git directory (runs/<id>/git/, written by the
spine's own orchestrator.workspace) with one commit per iteration,
and kernel / paper artifacts. A live run is a builder that keeps appending while the page is open."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any


class RunBuilder:
    def __init__(self, runs_dir: Path, run_id: str, kind: str, title: str, *, status: str = "running",
                 max_iterations: int = 20, max_hours: float = 2.0, max_tokens: int = 200_000) -> None:
        from orchestrator.workspace import init_repo

        self.dir = runs_dir / run_id
        self.dir.mkdir(parents=True)
        for sub in ("iterations", "workspace", "artifacts", "logs"):
            (self.dir / sub).mkdir()
        self.git_dir = self.dir / "git"
        init_repo(self.git_dir, self.dir / "workspace")
        self.seq = 0
        self.tokens = 0
        self.t0 = time.time()
        self.meta: dict[str, Any] = {
            "id": run_id, "task": {"kind": kind, "params": {}, "title": title}, "config": {},
            "status": status, "stop_reason": None, "iteration": 0, "best_score": None, "best_iteration": None,
            "budget": {"limits": {"max_iterations": max_iterations, "max_hours": max_hours, "max_tokens": max_tokens},
                       "used": {"iterations": 0, "hours": 0.0, "tokens": 0}},
            "pid": os.getpid(), "created_at": self.t0, "updated_at": self.t0,
        }
        self.write_meta()
        self.event("run_started", task=self.meta["task"])

    def write_meta(self) -> None:
        """run.json, replaced atomically as the spine does (readers never see half a file)."""
        self.meta["updated_at"] = time.time()
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=1), encoding="utf-8")
        tmp.replace(self.dir / "run.json")

    def event(self, kind: str, iteration: int | None = None, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        event = {"seq": self.seq, "ts": time.time(), "kind": kind, "iteration": iteration, **fields}
        with open(self.dir / "events.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")
            f.flush()
        return event

    def model_call(self, iteration: int, role: str, tokens: int = 900) -> None:
        self.tokens += tokens
        self.event("model_call", iteration, role=role, model="SmolLM2-135M", prompt_tokens=tokens - 200,
                   completion_tokens=200, reasoning_tokens=0, total_tokens=tokens, latency_s=1.5,
                   thinking=False, finish_reason="stop")

    def iteration(self, n: int, files: dict[str, str], *, verdict: str = "fail", score: float = 0.0,
                  findings: list[str] | None = None, action: str = "iterate", stdout: str = "") -> str:
        """One producer → check → verifier → decision round; returns the commit sha."""
        findings = findings or []
        started = time.time()
        self.event("iteration_started", n)
        self.model_call(n, "producer")
        for rel, text in files.items():
            path = self.dir / "workspace" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        from orchestrator.workspace import commit_tree, stage_tree

        sha = commit_tree(self.git_dir, n, stage_tree(self.git_dir, self.dir / "workspace"), verdict)
        self.event("commit", n, sha=sha, message=f"iteration {n}: {verdict}")
        self.event("exec", n, where="check", cmd="python -m pytest -q", exit_code=0 if verdict == "pass" else 1,
                   reason="exited", duration_s=2.5, stdout_tail=stdout, stderr_tail="")
        (self.dir / "logs" / f"{n:04d}-check.log").write_text(f"full check log of iteration {n}\n{stdout}\n")
        (self.dir / "logs" / f"check-{n:04d}-crash.txt").write_text("crash")
        (self.dir / "logs" / f"check-{n:04d}1.txt").write_text("another iteration's log")
        check = {"passed": verdict == "pass", "score": score, "summary": f"check of iteration {n}",
                 "metrics": {"score": score}, "findings": [], "evidence_path": None}
        self.event("check", n, **{k: check[k] for k in ("passed", "score", "summary", "metrics")})
        self.model_call(n, "verifier")
        self.event("verdict", n, verdict=verdict, score=score, findings=findings)
        self.event("decision", n, action=action, reason=f"verdict {verdict}")
        record = {"iteration": n, "commit": sha, "check": check,
                  "verdict": {"verdict": verdict, "score": score, "findings": findings},
                  "decision": {"action": action, "reason": f"verdict {verdict}"},
                  "started_at": started, "ended_at": time.time()}
        (self.dir / "iterations" / f"{n:04d}.json").write_text(json.dumps(record), encoding="utf-8")
        best = self.meta["best_score"]
        if verdict == "pass" and (best is None or score > best):
            self.meta["best_score"], self.meta["best_iteration"] = score, n
        self.meta["iteration"] = n
        self.meta["budget"]["used"] = {"iterations": n, "hours": (time.time() - self.t0) / 3600, "tokens": self.tokens}
        self.write_meta()
        return sha

    def finish(self, status: str, stop_reason: str | None = None) -> None:
        self.event("run_finished", status=status, stop_reason=stop_reason)
        self.meta["status"], self.meta["stop_reason"] = status, stop_reason
        self.write_meta()
        (self.dir / "report.md").write_text(f"# {self.meta['task']['title']}\n\n{status}\n")


def _plot(path: Path, xs: list[float], ys: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.plot(xs, ys, marker="o")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def kernel_artifacts(run: RunBuilder, speedups: list[float]) -> None:
    """The kernel task's program database (tasks/kernel/database.py layout): candidates.csv, verdicts/,
    sources/, best/ and best_speedup.png. Candidate 2 is caught cheating and not accepted."""
    root = run.dir / "artifacts" / "kernel"
    for sub in ("best", "verdicts", "sources"):
        (root / sub).mkdir(parents=True)
    with open(root / "candidates.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "parent", "correct", "accepted", "speedup", "ref_ms", "cand_ms", "aa_spread",
                    "cheats", "errors"])
        for i, s in enumerate(speedups, 1):
            cheat = "timing_hijack" if i == 2 else ""
            w.writerow([i, i - 1 if i > 1 else -1, not cheat, not cheat, f"{s:.2f}", "1.000", f"{1 / s:.3f}",
                        "0.01", cheat, ""])
            (root / "verdicts" / f"{i:04d}.json").write_text(json.dumps({"speedup": s, "cheats": [cheat] if cheat else []}))
            (root / "sources" / f"{i:04d}.py").write_text(f"SPEEDUP = {s}\n")
    verified = [0.0 if i == 1 else s for i, s in enumerate(speedups)]
    best = [max(verified[: i + 1]) for i in range(len(verified))]
    _plot(root / "best_speedup.png", list(range(1, len(speedups) + 1)), best, "best speed-up")
    (root / "best" / "candidate.py").write_text("import triton\n\n\ndef best_kernel_marker():\n    return 42\n")


def paper_artifacts(run: RunBuilder) -> None:
    """rubric.json with scores, report.html, and paper/reproduced tables and figures."""
    root = run.dir / "artifacts" / "paper"
    (root / "tables").mkdir(parents=True)
    (root / "figures").mkdir()
    rubric = {"id": "root", "requirements": "Reproduce the paper", "weight": 1, "score": 0.5, "sub_tasks": [
        {"id": "code", "requirements": "Implements the method", "weight": 2, "score": 0.75, "sub_tasks": [
            {"id": "code-1", "requirements": "Sparse attention selection implemented", "weight": 1, "score": 1.0,
             "task_category": "Code Development"},
            {"id": "code-2", "requirements": "Training loop matches section 3", "weight": 1, "score": 0.5,
             "task_category": "Code Development"}]},
        {"id": "result-1", "requirements": "Table 1 accuracy within 1 point", "weight": 1, "score": 0.0,
         "task_category": "Result Analysis"}]}
    (root / "rubric.json").write_text(json.dumps(rubric))
    (root / "report.html").write_text("<html><body><h1>Reproduction report</h1><p>score 0.5</p></body></html>")
    # The paper task's layout: tables/<id>.{paper,reproduced,deviation}.csv, figures/<id>_compare.png, and
    # per-iteration outputs elsewhere (which the view must not list).
    for role, acc in (("paper", "91.2"), ("reproduced", "88.7"), ("deviation", "-2.5")):
        (root / "tables" / f"table_1.{role}.csv").write_text(f"model,accuracy\nbaseline,85.0\nours,{acc}\n")
    _plot(root / "figures" / "figure_1_compare.png", [1, 2, 3], [1, 4, 9], "paper | reproduced")
    for role in ("paper", "reproduced"):
        _plot(root / "figures" / f"figure_2.{role}.png", [1, 2, 3], [1, 4, 9] if role == "paper" else [1, 3.5, 8], role)
    (root / "iterations" / "0001" / "outputs" / "figures").mkdir(parents=True)
    (root / "iterations" / "0001" / "outputs" / "figures" / "figure_1.png").write_bytes(b"not listed")
