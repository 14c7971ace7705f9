"""A search with islands (`[search] islands = K`, orchestrator/islands.py) driven by scripted models: K producers
each with its own conversation and workspace, one candidate per island per round, one writer recording them;
the best candidate migrates; a round cut by the iteration budget; resume after kill -9 loses and repeats no
island's verdict."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import git
from langchain_core.messages import AIMessage

from orchestrator import events as ev
from orchestrator.config import BudgetLimits, LoopSettings, SearchSettings, Settings, load_settings, settings_from_json
from orchestrator.runner import start_run
from serving.client import ModelEndpoint
from tasks.base import CheckContext, CheckReport
from tasks.code.task import CodeTask
from tests.orchestrator.crash_driver import min_kills, start
from tests.orchestrator.support import PolicyChatModel, Script, fix_after, local_opener, make_code_workspace, tool_call

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


def meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def records(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((run / "iterations").glob("*.json"))]


def settings(tmp: Path, islands: int, max_iterations: int, migrate_every: int = 2) -> Settings:
    fast = ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=fast, verifier=fast, runs_dir=tmp / "runs",
                    budget=BudgetLimits(max_iterations=max_iterations), loop=LoopSettings(stuck_patience=20),
                    search=SearchSettings(islands=islands, migrate_every=migrate_every))


def models(producer_policy):
    def make(role, endpoint, thinking, max_tokens=None):
        if role == "producer":
            return PolicyChatModel(messages=iter(()), policy=producer_policy)
        return Script().factory()(role, endpoint, thinking)
    return make


def assert_each_iteration_once(run: Path, islands: int) -> list[dict]:
    """Contiguous iterations, one verdict / commit / decision / record each, island k's candidates at
    iterations k+1, k+1+K, ..."""
    m, evs = meta(run), events(run)
    for kind in ("verdict", "commit", "decision", "iteration_started"):
        counts = Counter(e["iteration"] for e in evs if e["kind"] == kind)
        assert sorted(counts) == list(range(1, m["iteration"] + 1)) and set(counts.values()) == {1}, kind
    recs = records(run)
    assert [r["iteration"] for r in recs] == list(range(1, m["iteration"] + 1))
    assert [r["island"] for r in recs] == [(r["iteration"] - 1) % islands for r in recs]
    commits = [c.message for c in git.Repo(run / "git").iter_commits("HEAD")]
    assert sorted(int(c.split(":")[0].split()[1]) for c in commits) == list(range(m["iteration"] + 1))
    return recs


def test_three_islands_fix_in_parallel_and_one_writer_records_them(tmp_path: Path) -> None:
    task = CodeTask(source=str(make_code_workspace(tmp_path)), check_command="bash check.sh", main="calc.py")
    run = start_run(task, settings(tmp_path, 3, 12), models=models(fix_after(2, GOOD, BAD)),
                    open_sandbox=local_opener)
    m = meta(run)
    assert m["status"] == "succeeded" and m["iteration"] == 9  # three rounds of three; each island passes in its third
    assert m["config"]["search"] == {"islands": 3, "migrate_every": 2}
    recs = assert_each_iteration_once(run, 3)
    assert [r["verdict"]["verdict"] for r in recs] == ["fail"] * 6 + ["pass"] * 3
    evs = events(run)
    for e in evs:  # the islands' work is labelled; what the one writer and the run itself record is not
        if e["kind"] in ("model_call", "tool_call", "check", "verdict", "commit", "decision", "iteration_started") \
                and e["iteration"] is not None:  # (the planner's call is the run's)
            assert e["island"] == (e["iteration"] - 1) % 3, e
        if e["kind"] in ("run_started", "plan", "run_finished"):
            assert "island" not in e
        assert list(e)[:4] == ["seq", "ts", "kind", "iteration"]
    for k in range(3):  # own conversation and own workspace per island
        conv = (run / "conversations" / f"island-{k:02d}" / "producer-00.jsonl").read_text()
        assert conv.count("# Verifier verdict on iteration") == 2
        assert f"Verifier verdict on iteration {k + 1}:" in conv and f"iteration {k + 4}:" in conv
        workspace = run / "workspace" if k == 0 else run / "islands" / f"{k:02d}" / "workspace"
        assert (workspace / "calc.py").read_text() == GOOD
    assert not (run / "conversations" / "producer-00.jsonl").exists()
    report = (run / "report.md").read_text()
    assert "| iteration | island | verdict |" in report and "| 8 | 1 | pass |" in report
    # the rounds ran the islands at the same time: each round's three iterations started before any verdict
    order = [(e["kind"], e["iteration"]) for e in evs if e["kind"] in ("iteration_started", "verdict")]
    first_verdict = next(i for i, (kind, _) in enumerate(order) if kind == "verdict")
    assert {it for kind, it in order[:first_verdict]} == {1, 2, 3}
    verdict = next(e for e in evs if e["kind"] == "verdict")
    assert ev.format_event(verdict).split("] ")[0].endswith(f"[it {verdict['iteration']} island {verdict['island']}")


def test_one_island_is_the_plain_loop(tmp_path: Path) -> None:
    task = CodeTask(source=str(make_code_workspace(tmp_path)), check_command="bash check.sh", main="calc.py")
    run = start_run(task, settings(tmp_path, 1, 6), models=models(fix_after(1, GOOD, BAD)), open_sandbox=local_opener)
    assert meta(run)["status"] == "succeeded" and meta(run)["iteration"] == 2
    assert "search" not in meta(run)["config"]
    assert all("island" not in e for e in events(run)) and all("island" not in r for r in records(run))
    assert (run / "conversations" / "producer-00.jsonl").exists() and not (run / "islands").exists()


def test_the_iteration_budget_cuts_the_last_round(tmp_path: Path) -> None:
    task = CodeTask(source=str(make_code_workspace(tmp_path)), check_command="bash check.sh", main="calc.py")
    run = start_run(task, settings(tmp_path, 3, 5), models=models(fix_after(9, GOOD, BAD)), open_sandbox=local_opener)
    m = meta(run)
    assert m["status"] == "stopped" and m["stop_reason"].startswith("budget_iterations") and m["iteration"] == 5
    assert_each_iteration_once(run, 3)


@dataclasses.dataclass
class ScoredTask(CodeTask):
    """The code task with a score to climb (a test double: the score is the number the producer wrote in
    score.txt) and no end but the budget, as in a kernel search without a goal."""

    def check(self, ctx: CheckContext) -> CheckReport:
        report = super().check(ctx)
        if report.passed:
            report.score = float((ctx.workspace / "score.txt").read_text().splitlines()[0])
        return report

    def is_complete(self, report: CheckReport) -> bool:
        return False

    def on_iteration_end(self, run_dir: Path, iteration: int, report: CheckReport, accepted: bool,
                         parent: int | None = None) -> None:
        """Keeps the lineage the loop passes (the kernel task's program database stores it as `parent`)."""
        path = Path(run_dir) / "parents.json"
        parents = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**parents, str(iteration): parent}))


SCORES = {0: [1, 2, 3], 1: [5, 6, 7], 2: [2, 3, 4]}
"""What island k writes in round r (island 1 leads)."""


def scored_policy(messages: list) -> AIMessage:
    last = str(messages[-1].content)
    if last.startswith(("wrote ", "Observation (write_file)")):
        return tool_call("done", summary="wrote the score")
    island = ev.ISLAND.get()  # the scripted model knows which island's producer it plays
    rounds = sum("Verifier verdict on iteration" in str(m.content) for m in messages)
    return tool_call("write_file", path="score.txt", content=f"{SCORES[island][rounds]}\n# island {island}\n")


def test_the_best_candidate_migrates_to_the_islands_behind(tmp_path: Path) -> None:
    task = ScoredTask(source=str(make_code_workspace(tmp_path, solved=True)), check_command="bash check.sh",
                      main="calc.py")
    run = start_run(task, settings(tmp_path, 3, 9, migrate_every=2), models=models(scored_policy),
                    open_sandbox=local_opener)
    m = meta(run)
    assert m["status"] == "stopped" and m["iteration"] == 9
    assert m["best_score"] == 7 and m["best_iteration"] == 8  # island 1 in round 3
    migrations = [e for e in events(run) if e["kind"] == "migration"]
    # after round 2 the best is island 1's iteration 5 (score 6); islands 0 (best 2) and 2 (best 3) get it
    assert len(migrations) == 1 and migrations[0]["iteration"] == 5 and migrations[0]["source_island"] == 1
    assert migrations[0]["to"] == [0, 2] and migrations[0]["round"] == 2 and "island" not in migrations[0]
    best5 = git.Repo(run / "git").commit(records(run)[4]["commit"]).tree
    for k in (0, 2):
        conv = (run / "conversations" / f"island-{k:02d}" / "producer-00.jsonl").read_text()
        assert conv.count("# Migration: the best candidate so far") == 1
        # round 3 started from the migrated files: its diff is against iteration 5, so only score.txt changed
        third = git.Repo(run / "git").commit(records(run)[6 + k]["commit"]).tree
        assert {d.a_path for d in best5.diff(third)} == {"score.txt"}
        assert "# island 1" in (best5 / "score.txt").data_stream.read().decode()
    # each candidate's parent is its own island's last candidate, or the migrated one (0: the starting files)
    parents = json.loads((run / "parents.json").read_text())
    assert parents == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 2, "6": 3, "7": 5, "8": 5, "9": 5}


def test_islands_config_is_read_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "m3lab.toml"
    config.write_text("[search]\nislands = 4\nmigrate_every = 0\n")
    assert load_settings(config).search == SearchSettings(islands=4, migrate_every=0)
    snapshot = settings(tmp_path, 3, 9).to_json()  # run.json's config: a resumed run keeps its islands
    assert settings_from_json(snapshot, Settings()).search == SearchSettings(islands=3, migrate_every=2)
    assert "search" not in Settings().to_json() and settings_from_json(Settings().to_json(), Settings()).search.islands == 1
    config.write_text("[search]\nislands = 0\n")
    try:
        load_settings(config)
    except ValueError as exc:
        assert "[search] islands: expected a positive integer, got 0" in str(exc)
    else:
        raise AssertionError("islands = 0 was accepted")


def test_sigkill_mid_rounds_then_resume_loses_and_repeats_no_island_verdict(tmp_path: Path) -> None:
    rng = random.Random(4321)
    max_life = 3.0  # each process is killed within this many seconds (min_kills' bound)
    src, runs = make_code_workspace(tmp_path), tmp_path / "runs"
    kills = 0
    while kills < 6:
        proc = start(runs, src, islands=3)
        time.sleep(rng.uniform(1.0, max_life))
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    _, err = start(runs, src, islands=3).communicate(timeout=300)
    run = next(p for p in runs.iterdir() if not p.name.startswith(".") and (p / "run.json").exists())
    m: dict[str, Any] = meta(run)
    assert m["status"] == "succeeded", err.decode()[-3000:]
    assert kills >= min_kills(rounds=5, max_life=max_life) >= 3, "the run finished too early to exercise crashes"
    assert m["iteration"] == 15  # fix_after(4): five rounds of three islands
    recs = assert_each_iteration_once(run, 3)
    assert [r["verdict"]["verdict"] for r in recs] == ["fail"] * 12 + ["pass"] * 3
    seqs = [e["seq"] for e in events(run)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_retried_round_replays_the_finished_islands_from_the_journal(tmp_path: Path) -> None:
    """Island 2's check sandbox fails once (infrastructure): the node is retried; islands 0 and 1, whose
    verdicts were journaled meanwhile, are not produced or checked again."""
    from sandboxes.base import SandboxError

    opened: Counter[str] = Counter()

    class Broken:
        def exec(self, *args: Any, **kwargs: Any) -> Any:
            raise SandboxError("the docker daemon went away")

        def __enter__(self) -> Broken:  # noqa: PYI034 - a test double
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def opener(spec: Any, backend: str) -> Any:
        where = spec.workspace.parent.name if spec.workspace.parent.parent.name == "checks" else "producer"
        opened[where] += 1
        return Broken() if where == "0003" and opened[where] == 1 else local_opener(spec, backend)

    task = CodeTask(source=str(make_code_workspace(tmp_path)), check_command="bash check.sh", main="calc.py")
    run = start_run(task, settings(tmp_path, 3, 3), models=models(fix_after(0, GOOD, BAD)), open_sandbox=opener)
    assert meta(run)["status"] == "succeeded" and meta(run)["iteration"] == 3
    assert_each_iteration_once(run, 3)
    assert opened["0001"] == opened["0002"] == 1 and opened["0003"] == 2
    calls = Counter(e["iteration"] for e in events(run) if e["kind"] == "model_call" and e["role"] == "producer")
    assert calls == {1: 2, 2: 2, 3: 2}  # write, done: once per island


def test_a_stop_mid_round_then_resume_decides_each_island_verdict_once(tmp_path: Path) -> None:
    """The user stops the run while island 1 works: the round ends without deciding anything; the resumed run
    replays the verdicts the islands had journaled and records every iteration once."""
    from orchestrator.control import request_stop
    from orchestrator.runner import create_run, drive, resume_run
    from orchestrator.runtime import Runtime

    task = CodeTask(source=str(make_code_workspace(tmp_path)), check_command="bash check.sh", main="calc.py")
    s = settings(tmp_path, 2, 4)
    run = create_run(task, s)
    fixer = fix_after(1, GOOD, BAD)

    def stopping(messages: list) -> AIMessage:
        if ev.ISLAND.get() == 1 and len(messages) <= 2:  # island 1's first turn of the run
            request_stop(run.path, "enough for now")
        return fixer(messages)

    drive(Runtime(run, task, s, models(stopping), local_opener), resume=False)
    assert meta(run.path)["status"] == "stopped" and meta(run.path)["stop_reason"].startswith("user")
    assert not (run.path / "iterations").exists() or not list((run.path / "iterations").glob("*.json"))
    journaled = {e["iteration"] for e in events(run.path) if e["kind"] == "verdict"}
    resume_run(run.path, s, models=models(fixer), open_sandbox=local_opener)
    assert meta(run.path)["status"] == "succeeded" and meta(run.path)["iteration"] == 4
    assert_each_iteration_once(run.path, 2)
    assert journaled <= {1}  # at most island 0 finished its iteration before the stop reached it


def test_stuck_islands_change_strategy_together_then_stop(tmp_path: Path) -> None:
    task = CodeTask(source=str(make_code_workspace(tmp_path)), check_command="bash check.sh", main="calc.py")
    idle = Script(default={"producer": AIMessage(content="DONE: nothing changed")})
    run = start_run(task, settings(tmp_path, 2, 40), models=idle.factory(), open_sandbox=local_opener)
    m = meta(run)
    assert m["status"] == "stopped" and m["stop_reason"].startswith("stuck"), m["stop_reason"]
    assert m["iteration"] % 2 == 0 and m["iteration"] < 40
    changes = [e for e in events(run) if e["kind"] == "strategy_change"]
    assert sorted(e["island"] for e in changes) == [0, 1] and len({e["reason"] for e in changes}) == 1
    for k in range(2):
        assert (run / "conversations" / f"island-{k:02d}" / "producer-01.jsonl").exists()
    assert_each_iteration_once(run, 2)
