"""Round trip of one correctness call's frames between two processes (evaluator -> worker: a 4096² float32 input,
64 MB; back: the output and the input, 128 MB) through `harness/protocol.py`, for one or more copies of the
harness (e.g. this tree and an older commit's, extracted with `git show`), one after another in the same run:

    mkdir -p /tmp/old/harness && touch /tmp/old/harness/__init__.py
    git show f93ded6:tasks/kernel/harness/protocol.py > /tmp/old/harness/protocol.py
    .venv/bin/python benchmarks/kernel_frames_bench.py tasks/kernel /tmp/old --repeat 5
Each variant runs in a fresh interpreter (its own `harness` package); the table is printed last."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from harness.protocol import Message, recv, send
to_child, to_parent = os.pipe(), os.pipe()
pid = os.fork()
if pid == 0:
    for _ in range(int(sys.argv[2])):
        m = recv(to_child[0])
        send(to_parent[1], Message({"ok": True}, [m.tensors[0], m.tensors[0].clone()]))
    os._exit(0)
x = torch.randn(4096, 4096)
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    send(to_child[1], Message({"cmd": "run"}, [x]))
    back = recv(to_parent[0])
    times.append(time.perf_counter() - t)
    assert torch.equal(back.tensors[1], x)
os.waitpid(pid, 0)
print(json.dumps(times))
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("folders", nargs="+", type=Path, help="folders holding a harness/ package")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    rows = []
    for folder in a.folders:
        out = subprocess.run([sys.executable, "-c", CHILD, str(folder.resolve()), str(a.repeat)], check=True,
                             capture_output=True, text=True).stdout
        times = json.loads(out.strip().splitlines()[-1])
        rows.append((str(folder), statistics.median(times), min(times)))
    print("| harness | median s per round trip (64 MB out, 128 MB back) | best s |\n| --- | --- | --- |")
    for name, med, best in rows:
        print(f"| {name} | {med:.3f} | {best:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
