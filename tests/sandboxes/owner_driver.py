"""Child process for the reaper tests: opens a sandbox, prints its id, starts a long command, waits to be
killed. Run as `python -m tests.sandboxes.owner_driver BACKEND WORKSPACE`."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from sandboxes import SandboxSpec, open_sandbox


def main() -> None:
    backend, workspace = sys.argv[1], Path(sys.argv[2])
    sb = open_sandbox(SandboxSpec(workspace=workspace, run_id="reaper-test"), backend=backend, pool=False)
    print(sb.id, flush=True)
    threading.Thread(target=sb.exec, args=("echo started > /work/started; sleep 600",), daemon=True).start()
    time.sleep(600)


if __name__ == "__main__":
    main()
