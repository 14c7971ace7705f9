"""In-container exec agent (stdlib only; runs as `python3 -c <this file>` inside the sandbox).

A `docker exec` costs ~85 ms (runc starts a process in the container each time); this agent is started once
per container through one long-lived exec and then spawns each command itself, so a round trip costs a
fork. Protocol: one JSON request per line on stdin ({"argv", "env", "cwd", "timeout", "kill_after"}), one
JSON response per line on stdout ({"code", "out", "err", "timed_out", "error"}; output base64, tail-capped).
Nothing here is trusted by the host for limits: memory, pids and OOM accounting stay with the cgroup.

Commands run as this process's user, so before answering anything the agent makes itself non-dumpable: its
/proc entries then belong to root, and a command can neither write a forged answer into the agent's stdout
(/proc/<agent>/fd/1) nor read its requests or memory. An agent that cannot do that does not start (the sandbox
then runs each command without it).
"""
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time

CAP = 1 << 20


def pump(stream, chunks):
    size = 0
    while True:
        data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not data:
            break
        chunks.append(data)
        size += len(data)
        if size > 2 * CAP:
            joined = b"".join(chunks)
            chunks[:] = [b"[... output dropped ...]\n" + joined[-CAP:]]
            size = CAP
    stream.close()


def kill_group(pid, sig):
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(req):
    env = dict(os.environ)
    env.update(req.get("env") or {})
    try:
        proc = subprocess.Popen(req["argv"], cwd=req.get("cwd") or "/", env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        return {"code": code, "out": "", "err": base64.b64encode(str(exc).encode()).decode(),
                "timed_out": False, "error": str(exc)}
    out, err = [], []
    readers = [threading.Thread(target=pump, args=(proc.stdout, out)),
               threading.Thread(target=pump, args=(proc.stderr, err))]
    for r in readers:
        r.daemon = True
        r.start()
    timed_out = False
    try:
        code = proc.wait(timeout=req["timeout"])
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=req.get("kill_after", 2))
        except subprocess.TimeoutExpired:
            kill_group(proc.pid, signal.SIGKILL)
            code = proc.wait()
    # Whatever the command left in its session dies with it (the host sweeps the rest of the cgroup).
    kill_group(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 2
    for r in readers:
        r.join(max(0.0, deadline - time.monotonic()))
    if code < 0:
        code = 128 - code
    return {"code": code, "out": base64.b64encode(b"".join(out)).decode(),
            "err": base64.b64encode(b"".join(err)).decode(), "timed_out": timed_out, "error": ""}


def protect():
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def main():
    protect()
    sys.stdout.write(json.dumps({"ready": os.getpid()}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        resp = run(json.loads(line))
        sys.stdout.write(json.dumps(resp) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
