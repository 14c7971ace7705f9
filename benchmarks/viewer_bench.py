"""How fast the run viewer opens a large run: 1,000 iterations, 100,000 events (the issue's bar: < 1 s).

Builds a synthetic run directory to the orchestrator/README.md contract (events.jsonl, iterations/, the run's
bare git directory runs/<id>/git/ with one commit per iteration via `git fast-import`, run.json), serves it with the real viewer,
and times the API calls a page makes, plus (when Chromium is there) the browser opening the run page.

    .venv/bin/python -m benchmarks.viewer_bench [--iterations 1000] [--events 100000] [--repeats 5] [--no-browser]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
_KINDS = ("model_call", "tool_call", "exec", "model_call", "tool_call")


def _event(seq: int, iteration: int, kind: str) -> dict:
    base = {"seq": seq, "ts": 1.7e9 + seq, "kind": kind, "iteration": iteration}
    if kind == "model_call":
        base.update(role="producer", model="MiniMax-M3", prompt_tokens=5000, completion_tokens=700, reasoning_tokens=300,
                    total_tokens=6000, latency_s=12.5, thinking=True, finish_reason="stop")
    elif kind == "exec":
        base.update(where="producer", cmd="python bench.py", exit_code=0, reason="exited", duration_s=3.2,
                    stdout_tail="timing ok " * 40, stderr_tail="")
    else:
        base.update(role="producer", tool="write_file", args={"path": "kernel.py"}, ok=True, output="written " * 20)
    return base


def build_run(runs_dir: Path, iterations: int, events: int) -> Path:
    """A finished kernel run of the given size; returns its directory."""
    run = runs_dir / "bench-run"
    for sub in ("iterations", "workspace", "artifacts", "logs"):
        (run / sub).mkdir(parents=True)
    per = max(1, events // iterations)
    with open(run / "events.jsonl", "w", encoding="utf-8") as f:
        for seq in range(1, events + 1):
            it = min(iterations, 1 + (seq - 1) // per)
            f.write(json.dumps(_event(seq, it, _KINDS[seq % len(_KINDS)])) + "\n")
    stream = []
    for n in range(1, iterations + 1):
        body = f"# iteration {n}\nBLOCK = {16 * (1 + n % 8)}\n" + "".join(f"line_{i} = {n * i}\n" for i in range(40))
        data = body.encode()
        stream.append(f"commit refs/heads/main\ncommitter m3lab <m3lab@localhost> {1700000000 + n} +0000\n"
                      f"data {len(f'iteration {n}: pass')}\niteration {n}: pass\n"
                      f"M 644 inline kernel.py\ndata {len(data)}\n{body}\n")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(run / "git")], check=True)
    subprocess.run(["git", "--git-dir", str(run / "git"), "fast-import", "--quiet"], input="".join(stream).encode(),
                   check=True)
    for n in range(1, iterations + 1):
        record = {"iteration": n, "commit": None, "started_at": 1.7e9, "ended_at": 1.7e9 + 60,
                  "check": {"passed": True, "score": 1 + n / iterations, "summary": "ok", "metrics": {}, "findings": []},
                  "verdict": {"verdict": "pass", "score": 1 + n / iterations, "findings": ["none"]},
                  "decision": {"action": "iterate", "reason": "below target"}}
        (run / "iterations" / f"{n:04d}.json").write_text(json.dumps(record))
    meta = {"id": run.name, "task": {"kind": "kernel", "params": {}, "title": "bench"}, "config": {}, "status": "stopped",
            "stop_reason": "budget", "iteration": iterations, "best_score": 2.0, "best_iteration": iterations,
            "budget": {"limits": {"max_iterations": iterations, "max_hours": 24, "max_tokens": 10**9},
                       "used": {"tokens": events * 1000, "elapsed_s": 3600}},
            "pid": None, "created_at": 1.7e9, "updated_at": 1.7e9 + 3600}
    (run / "run.json").write_text(json.dumps(meta))
    return run


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, max) wall time in ms."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples)


def _browser_open(url: str, repeats: int) -> tuple[float, float] | None:
    """Page navigation until the timeline and the last events are on screen."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()

        def open_page() -> None:
            page.goto("about:blank")
            page.goto(f"{url}/#/run/bench-run")
            page.wait_for_selector("#events .ev")
            page.wait_for_selector("#timeline .it")

        open_page()  # warm-up (browser caches, Python imports)
        result = _time(open_page, repeats)
        browser.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    import httpx

    from orchestrator.viewer.server import ViewerServer

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = build_run(Path(tmp), args.iterations, args.events)
        size_mb = (run / "events.jsonl").stat().st_size / 1e6
        print(f"built run: {args.iterations} iterations, {args.events} events ({size_mb:.1f} MB) "
              f"in {time.perf_counter() - t0:.1f} s")
        with ViewerServer(Path(tmp), port=0) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            base = "/api/runs/bench-run"
            start = client.get(base).json()["events"]["start"]
            mid = args.iterations // 2
            rows = [
                ("runs list (GET /api/runs)", _time(lambda: client.get("/api/runs").raise_for_status(), args.repeats)),
                ("open run (GET /api/runs/<id>)", _time(lambda: client.get(base).raise_for_status(), args.repeats)),
                ("older events page (200)", _time(lambda: client.get(f"{base}/events?before={start}").raise_for_status(), args.repeats)),
                (f"iteration {mid}: diff + events", _time(lambda: client.get(f"{base}/iterations/{mid}").raise_for_status(), args.repeats)),
            ]
            if not args.no_browser:
                browser = _browser_open(server.url, args.repeats)
                if browser:
                    rows.append(("browser: run page to events+timeline", browser))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load} (timings are wall time, shared CPU)")
    print("\n| step | median_ms | max_ms |\n| --- | --- | --- |")
    for name, (median_ms, max_ms) in rows:
        print(f"| {name} | {median_ms:.1f} | {max_ms:.1f} |")


if __name__ == "__main__":
    main()
