"""A warm evaluator: one process that evaluates candidate after candidate for one target and keeps its two
reference workers running in between (their imports and CUDA context cost seconds per evaluation otherwise).

Started by the host (tasks/kernel/warm.py) in its own folder (harness/, target.py, logs/), which no candidate can
write. Each request is one line on stdin, `{"dir": "/abs/evaluation/folder"}`, naming a folder the runner laid out
exactly as for a one-shot evaluation (options.json, nonce, target.py, cand/, harness/); the answer is the usual
`M3LAB-VERDICT <nonce> <json>` line on stdout. Each evaluation gets a fresh compile and candidate worker (as uid
nobody when this process is root), a fresh secret seed, and re-times the references; only the reference
processes persist (see WarmRefs)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .evaluate import Evaluation, Layout, WarmRefs, _read_nonce
from .options import NONCE_FILE, OPTIONS_FILE, OptionsError, load_options
from .verdict import Verdict


def evaluate_folder(line: str, warm: WarmRefs) -> tuple[str, Verdict]:
    """One request: the nonce (read and deleted first) and the verdict."""
    folder = Path(json.loads(line)["dir"])
    if not folder.is_absolute() or not folder.is_dir():
        return "-", Verdict(errors=[f"warm evaluator: {folder} is not an absolute folder"])
    nonce = _read_nonce(folder / NONCE_FILE)
    try:
        opts = load_options(folder / OPTIONS_FILE)
    except OptionsError as exc:
        return nonce, Verdict(errors=[f"harness options: {exc}"])
    return nonce, Evaluation(opts, Layout(folder), warm=warm).run()


def main() -> int:
    from .procs import set_subreaper
    from .worker import _set_nondumpable

    _set_nondumpable()
    set_subreaper()  # a helper a candidate worker double-forks stays our child: found as a stray process
    warm = WarmRefs(Layout(Path.cwd()))
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                nonce, verdict = evaluate_folder(line, warm)
            except (OSError, ValueError, KeyError, TypeError) as exc:  # a bad request: answered, never a pass
                nonce, verdict = "-", Verdict(errors=[f"warm evaluator: {type(exc).__name__}: {exc}"])
            sys.stdout.write(f"M3LAB-VERDICT {nonce} {json.dumps(verdict.to_json())}\n")
            sys.stdout.flush()
    finally:
        warm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
