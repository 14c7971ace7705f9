"""Child process for the reaper tests: opens a sandbox, prints its id, starts a long command, waits to be
killed. Run as `python -m tests.sandboxes.owner_driver BACKEND WORKSPACE [SLEEP]` (SLEEP: the command's duration in
seconds, default 600; a test passes an unusual one so `pgrep` finds this command and nothing else on the machine)."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from sandboxes import SandboxSpec, open_sandbox


def main() -> None:
    backend, workspace = sys.argv[1], Path(sys.argv[2])
    duration = sys.argv[3] if len(sys.argv) > 3 else "600"
    sb = open_sandbox(SandboxSpec(workspace=workspace, run_id="reaper-test"), backend=backend, pool=False)
    print(sb.id, flush=True)
    threading.Thread(target=sb.exec, args=(f"echo started > /work/started; sleep {duration}",), daemon=True).start()
    time.sleep(600)


if __name__ == "__main__":
    main()
