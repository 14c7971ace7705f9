"""A long kernel search through the real loop: hundreds of iterations of `optimize` on a bundled CPU target with
a scripted producer that rotates honest candidates, planted cheats and broken code; stopped half-way and resumed
from the run directory. Prints a table (iterations, evaluations per hour, best speed-up, cheats rejected,
checkpoint size) and checks the program database is complete and contiguous.

    .venv/bin/python benchmarks/kernel_search_soak.py [--iterations 200] [--target softmax]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402

from orchestrator.config import BudgetLimits, LoopSettings, Settings  # noqa: E402
from orchestrator.runner import resume_run, start_run  # noqa: E402
from serving.client import ModelEndpoint  # noqa: E402
from tasks.kernel.runner import EvalOptions  # noqa: E402
from tasks.kernel.targets import TARGETS_DIR  # noqa: E402
from tasks.kernel.task import KernelTask  # noqa: E402
from tests.orchestrator.support import PolicyChatModel, Script, local_opener  # noqa: E402


def candidates(target: str) -> list[tuple[str, str]]:
    """(label, code) the scripted producer cycles through: honest, cheats, broken."""
    honest = sorted((TARGETS_DIR / "candidates").glob(f"{target}_*.py"))
    cheats = sorted((TARGETS_DIR / "cheats").glob("c*.py"))[:6]
    pool = [(f"honest:{p.stem}", p.read_text()) for p in honest]
    pool += [(f"cheat:{p.stem}", p.read_text()) for p in cheats]
    pool.append(("broken", "import torch\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x[0]\n"))
    return pool


def label_sources(run: Path, pool: list[tuple[str, str]]) -> dict[int, str]:
    """Which pool entry each iteration submitted (from the program database's saved sources)."""
    by_code = {code.strip(): label for label, code in pool}
    sources = sorted((run / "artifacts" / "kernel" / "sources").glob("*.py"))
    return {int(p.stem): by_code.get(p.read_text().strip(), "unknown") for p in sources}


def models(pool: list[tuple[str, str]]):
    def policy(messages: list) -> AIMessage:
        seen = sum("Verifier verdict on iteration" in str(m.content) for m in messages)
        seen += sum("Summary of the recent iterations" in str(m.content) for m in messages) * 10_000
        _, code = pool[seen % len(pool)]
        return AIMessage(content=f"```python\n{code}```\n")

    def make(role, endpoint, thinking, max_tokens=None):
        if role == "producer":
            return PolicyChatModel(messages=iter(()), policy=policy)
        return Script().factory()(role, endpoint, thinking)
    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--target", default="softmax")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kernel_search_soak.md")
    args = parser.parse_args()
    pool = candidates(args.target)
    endpoint = ModelEndpoint(retry_for_s=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(producer=endpoint, verifier=endpoint, runs_dir=Path(tmp) / "runs",
                            budget=BudgetLimits(max_iterations=args.iterations // 2),
                            loop=LoopSettings(stuck_patience=10_000))
        task = KernelTask(target=args.target, isolation="subprocess", options=EvalOptions(iters=4, warmup=1))
        started = time.perf_counter()
        run = start_run(task, settings, models=models(pool), open_sandbox=local_opener)
        resume_run(run, settings, models=models(pool), open_sandbox=local_opener,
                   budget_overrides={"max_iterations": args.iterations})
        wall = time.perf_counter() - started
        meta = json.loads((run / "run.json").read_text())
        table = pd.read_csv(run / "artifacts/kernel/candidates.csv")
        assert list(table["iteration"]) == list(range(1, args.iterations + 1)), "program database has gaps"
        assert meta["iteration"] == args.iterations
        labels = label_sources(run, pool)
        table["label"] = table["iteration"].map(labels)
        submitted = table[table["label"].str.startswith("cheat")]
        accepted_cheats = submitted[submitted["accepted"] == True]  # noqa: E712
        flagged = submitted[submitted["cheats"].fillna("").astype(str) != ""]
        assert accepted_cheats.empty, f"cheats accepted: {accepted_cheats[['iteration', 'label']].values.tolist()}"
        best_label = labels.get(meta["best_iteration"], "?")
        db_mb = sum(p.stat().st_size for p in run.glob("checkpoints.sqlite*")) / 2**20
    rows = [("iterations (stopped at half, resumed)", str(args.iterations)),
            ("wall time", f"{wall / 60:.1f} min"),
            ("evaluations per hour", f"{args.iterations / wall * 3600:.0f}"),
            ("best verified speed-up", f"{meta['best_score']:.3f}x at iteration {meta['best_iteration']} "
                                       f"({best_label})"),
            ("planted cheats submitted / flagged as cheats / accepted",
             f"{len(submitted)} / {len(flagged)} / {len(accepted_cheats)}"),
            ("submissions by kind", ", ".join(f"{k} {v}" for k, v in table["label"].value_counts().items())),
            ("checkpoint database", f"{db_mb:.1f} MB")]
    text = (f"# Kernel search soak: {args.target} on CPU ({time.strftime('%Y-%m-%d')}, {platform.node()}, "
            f"{platform.machine()})\n\n| metric | value |\n| --- | --- |\n"
            + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
