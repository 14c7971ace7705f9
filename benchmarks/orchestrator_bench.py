"""Loop overhead per iteration (model and sandbox time excluded: an instant scripted model and a no-op task)
and checkpoint bytes added per iteration, at 300 and at 3,000 iterations.

Baseline in the same run: a bare LangGraph loop with a SQLite checkpointer whose state list grows by one entry
per step (the quadratic pattern the spine must avoid).

    .venv/bin/python benchmarks/orchestrator_bench.py [--iterations 300 3000]
"""
from __future__ import annotations

import argparse
import json
import operator
import platform
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from orchestrator.config import BudgetLimits, LoopSettings, Settings  # noqa: E402
from orchestrator.runner import create_run, drive  # noqa: E402
from orchestrator.runtime import Runtime  # noqa: E402
from sandboxes.base import SandboxSpec  # noqa: E402
from tasks.base import CheckContext, CheckReport  # noqa: E402
from tests.orchestrator.support import Script, local_opener, tool_call  # noqa: E402


@dataclass
class NoopTask:
    """Passes instantly and is never complete, so the loop runs to its iteration budget."""

    kind: ClassVar[str] = "code"
    source: str = ""

    def params(self) -> dict[str, Any]:
        return {}

    def title(self) -> str:
        return "no-op"

    def prepare_workspace(self, workspace: Path) -> None:
        (workspace / "f.txt").write_text("x")

    def producer_brief(self) -> str:
        return "nothing"

    def main_file(self) -> str | None:
        return None

    def sandbox_spec(self, workspace: Path) -> SandboxSpec:
        return SandboxSpec(workspace=workspace)

    def check(self, ctx: CheckContext) -> CheckReport:
        return CheckReport(True, 1.0, "ok")

    def verifier_brief(self) -> str:
        return ""

    def is_complete(self, report: CheckReport) -> bool:
        return False

    def on_iteration_end(self, run_dir: Path, iteration: int, report: CheckReport, accepted: bool,
                         parent: int | None = None) -> None:
        return None

    def report_section(self, run_dir: Path) -> str:
        return ""


def spine(iterations: int, root: Path) -> dict[str, float]:
    settings = Settings(runs_dir=root / "runs", budget=BudgetLimits(max_iterations=iterations, max_tokens=10**12),
                        loop=LoopSettings(stuck_patience=10**9))
    script = Script(default={"producer": tool_call("done", summary="ok"),
                             "verifier": tool_call("submit_verdict", verdict="pass", findings=[])})
    task = NoopTask()
    run = create_run(task, settings)
    started = time.perf_counter()
    drive(Runtime(run, task, settings, script.factory(), local_opener), resume=False)
    total = time.perf_counter() - started
    # Model time = the calls' own latency as recorded in the run's events (the scripted model is instant, but
    # LangChain's handling of a long message list inside invoke is model-call time, not loop overhead).
    events = (json.loads(line) for line in (run.path / "events.jsonl").read_text().splitlines())
    model_s = sum(e["latency_s"] for e in events if e["kind"] == "model_call")
    db = run.path / "checkpoints.sqlite"
    size = db.stat().st_size + sum(p.stat().st_size for p in run.path.glob("checkpoints.sqlite-*"))
    return {"ms_per_iteration": 1000 * (total - model_s) / iterations, "checkpoint_kb_per_iteration":
            size / 1024 / iterations, "checkpoint_mb": size / 2**20}


class _Growing(TypedDict):
    items: Annotated[list[dict[str, Any]], operator.add]
    n: int


def baseline(iterations: int, root: Path) -> dict[str, float]:
    """Bare LangGraph loop whose state list grows by one entry per step."""
    from langgraph.checkpoint.sqlite import SqliteSaver
    from langgraph.graph import END, START, StateGraph

    def step(state: _Growing) -> dict[str, Any]:
        # One message-sized entry per step, as a loop that keeps its history in state would add.
        return {"items": [{"step": state["n"], "text": "x" * 200}], "n": state["n"] + 1}

    graph = StateGraph(_Growing)
    graph.add_node("step", step)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: END if s["n"] >= iterations else "step")
    path = root / "baseline.sqlite"
    conn = sqlite3.connect(path, check_same_thread=False)
    app = graph.compile(checkpointer=SqliteSaver(conn))
    started = time.perf_counter()
    app.invoke({"items": [], "n": 0}, {"configurable": {"thread_id": "b"}, "recursion_limit": iterations + 10})
    total = time.perf_counter() - started
    conn.close()
    return {"ms_per_iteration": 1000 * total / iterations, "checkpoint_kb_per_iteration":
            path.stat().st_size / 1024 / iterations, "checkpoint_mb": path.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--baseline-max", type=int, default=300, help="largest run of the quadratic baseline")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "orchestrator_bench.md")
    args = parser.parse_args()
    rows = []
    for n in args.iterations:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(("spine", n, spine(n, Path(tmp))))
            if n <= args.baseline_max:  # the quadratic baseline would write ~1 GB at 3,000 iterations
                rows.append(("bare LangGraph, growing list (baseline)", n, baseline(n, Path(tmp))))
    header = ("| loop | iterations | overhead ms/iteration | checkpoint KB/iteration | checkpoint MB |\n"
              "|---|---|---|---|---|")
    lines = [f"| {name} | {n} | {r['ms_per_iteration']:.2f} | {r['checkpoint_kb_per_iteration']:.2f} | "
             f"{r['checkpoint_mb']:.1f} |" for name, n, r in rows]
    table = "\n".join([header, *lines])
    machine = f"{platform.node()} · {platform.processor() or platform.machine()} · Python {platform.python_version()}"
    text = f"# Orchestrator overhead ({time.strftime('%Y-%m-%d')}, {machine})\n\n{table}\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
