"""Paper grading cost: model calls and wall time to grade a 100-leaf rubric, leaf by leaf (the old way: one call per
judged leaf, one at a time) against batched + concurrent grading, on the same evidence.

    .venv/bin/python benchmarks/paper_grading_bench.py [--latency-s 0.5] [--endpoint http://127.0.0.1:8000/v1] \
        [--md benchmarks/results/paper_grading.md]

The scripted judge answers after a fixed latency (a stand-in for a served model's time per request) and decides
each leaf from its requirement and the evidence, so the verdicts of the two ways can be compared one by one. With
--endpoint the same rubric is also graded by the real served model (its verdicts are reported, not compared: a
small model's answers differ between prompts)."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.paper.grading import Grading, grade  # noqa: E402
from tests.tasks.paper.judges import ScriptedJudge  # noqa: E402
from tests.tasks.paper.test_grading import _evidence  # noqa: E402
from tests.tasks.paper.test_grading_batches import _repo_files, by_topic, hundred_leaf_rubric  # noqa: E402


class TimedJudge(ScriptedJudge):
    def __init__(self, latency_s: float) -> None:
        super().__init__(by_topic)
        self.latency_s = latency_s

    def __call__(self, prompt: str, images=()) -> str:  # type: ignore[override]
        time.sleep(self.latency_s)
        return super().__call__(prompt, images)


def _run(name: str, judge, ev, **kwargs) -> tuple[str, Grading, float]:
    t0 = time.perf_counter()
    grading = grade(hundred_leaf_rubric(), ev, judge, **kwargs)
    return name, grading, time.perf_counter() - t0


def _endpoint_judge(url: str):
    from serving.client import ModelEndpoint
    from tasks.paper.asker import endpoint_asker

    ask, budget = endpoint_asker(ModelEndpoint(base_url=url, retry_for_s=30, timeout_s=900))
    return ask, budget.prompt_chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=0.5, help="Scripted judge's time per call.")
    parser.add_argument("--endpoint", default=None, help="Also grade with this OpenAI-compatible server.")
    parser.add_argument("--endpoint-leaf-by-leaf", action="store_true",
                        help="With --endpoint, also grade leaf by leaf through it (one call per judged leaf: slow).")
    parser.add_argument("--md", type=Path, default=None, help="Write the table here too.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ev = _evidence(Path(tmp), _repo_files(), stale={"reproduce.sh", "fit.py"})
        rows = [_run("leaf by leaf, sequential (old)", TimedJudge(args.latency_s), ev, max_batch_leaves=1,
                     max_workers=1),
                _run("leaf by leaf, 4 concurrent", TimedJudge(args.latency_s), ev, max_batch_leaves=1),
                _run("batched, 4 concurrent (new)", TimedJudge(args.latency_s), ev)]
        if args.endpoint:
            ask, chars = _endpoint_judge(args.endpoint)
            if args.endpoint_leaf_by_leaf:
                rows.append(_run("served model: leaf by leaf, sequential", ask, ev, max_prompt_chars=chars,
                                 max_batch_leaves=1, max_workers=1))
            rows.append(_run("served model: batched, 4 concurrent", ask, ev, max_prompt_chars=chars))
    reference = {g.id: g.score for g in rows[0][1].leaves}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"machine: {os.cpu_count()} cores, load average {load}; scripted judge latency {args.latency_s} s/call; "
             f"rubric: 100 leaves, {sum(g.method == 'judge' for g in rows[0][1].leaves)} need the judge",
             "", "| grading | judge calls | wall_s | score | verdicts equal to leaf-by-leaf |", "| --- | --- | --- | --- | --- |"]
    for name, grading, wall in rows:
        same = sum(reference[g.id] == g.score for g in grading.leaves)
        lines.append(f"| {name} | {grading.judge_calls} | {wall:.2f} | {grading.score:.3f} | {same}/100 |")
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(f"# Paper grading benchmark\n\n{text}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
