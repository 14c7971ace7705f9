"""The abuse battery (issue 2): each case once per backend (Docker, process) against the real mechanisms.
Every check has a positive control so it cannot pass by the command simply failing to run."""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandboxes.conftest import Factory

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def host_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP server on all host interfaces; records every connection it accepts."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    hits: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, addr = srv.accept()
            except OSError:
                continue
            hits.append(addr[0])
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


def _host_ip() -> str:
    """A non-loopback address of this host (the route to the outside)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return "172.17.0.1"


def test_network_egress_blocked(sandbox_factory: Factory, host_listener: tuple[int, list[str]]) -> None:
    port, hits = host_listener
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # positive control: the listener works from the host
    for _ in range(50):
        if hits:
            break
        time.sleep(0.05)
    before = len(hits)
    assert before == 1
    sb = sandbox_factory()
    targets = [f"127.0.0.1/{port}", f"{_host_ip()}/{port}", "172.17.0.1/" + str(port), "1.1.1.1/443", "8.8.8.8/53"]
    for target in targets:
        res = sb.exec(f"timeout 5 bash -c 'echo x > /dev/tcp/{target}' && echo CONNECTED", timeout_s=20)
        assert "CONNECTED" not in res.stdout, f"sandbox reached {target}"
        assert res.exit_code != 0
    time.sleep(0.5)
    assert len(hits) == before, "the host listener accepted a connection from the sandbox"
    # No interface but loopback.
    res = sb.exec("cat /proc/net/dev")
    ifaces = {ln.split(":")[0].strip() for ln in res.stdout.splitlines()[2:]}
    assert ifaces <= {"lo"}, ifaces


def test_host_filesystem_invisible_and_unwritable(sandbox_factory: Factory, workspace: Path) -> None:
    secret_dir = Path("/var/tmp") / f"m3lab-secret-{uuid.uuid4().hex[:8]}"
    secret_dir.mkdir()
    (secret_dir / "key").write_text("hunter2")
    try:
        sb = sandbox_factory()
        res = sb.exec(f"test -e {secret_dir}/key && echo VISIBLE; cat /root/.bash_history 2>/dev/null; "
                      "ls /work/main /var/lib/docker /home 2>/dev/null | head; echo done")
        assert "VISIBLE" not in res.stdout and res.stdout.strip().endswith("done"), res
        assert "pyproject.toml" not in res.stdout
        for path in ("/usr/bin/evil", "/etc/evil", "/evil", "/var/evil", f"{secret_dir}/key"):
            res = sb.exec(f"echo pwned > {path} && echo WROTE")
            assert "WROTE" not in res.stdout, f"wrote {path}"
        # Positive control: the workspace is writable and the file shows up on the host.
        assert sb.exec("echo ok > /work/out.txt").ok
        assert (workspace / "out.txt").read_text() == "ok\n"
        assert (secret_dir / "key").read_text() == "hunter2"
    finally:
        for p in secret_dir.iterdir():
            p.unlink()
        secret_dir.rmdir()


def test_fork_bomb_contained(sandbox_factory: Factory) -> None:
    sb = sandbox_factory(pids=64)
    res = sb.exec("for i in $(seq 200); do sleep 30 & done; wait", timeout_s=8)
    assert "fork" in res.stderr or "Resource temporarily unavailable" in res.stderr, res.stderr[-500:]
    res = sb.exec(":(){ :|:& };:", timeout_s=5)
    assert res.reason in ("exited", "timeout", "killed"), res
    assert res.duration_s < 60
    after = sb.exec("echo alive", timeout_s=30)
    assert after.ok and after.stdout.strip() == "alive", after
    assert os.fork and _host_can_fork()


def _host_can_fork() -> bool:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return os.waitpid(pid, 0)[1] == 0


def test_memory_bomb_killed_with_oom(sandbox_factory: Factory) -> None:
    sb = sandbox_factory(memory_mb=128)
    res = sb.exec("python3 -c \"b = bytearray(600 * 1024 * 1024); print('allocated', len(b))\"", timeout_s=60)
    assert res.reason == "oom", res
    assert "out of memory" in res.stderr
    assert "allocated" not in res.stdout
    small = sb.exec("python3 -c \"b = bytearray(20 * 1024 * 1024); print('small ok')\"", timeout_s=60)
    assert small.ok and "small ok" in small.stdout, small  # same sandbox still usable, host unharmed


def test_disk_fill_bounded(sandbox_factory: Factory, workspace: Path) -> None:
    sb = sandbox_factory(tmpfs_mb=32, max_file_mb=16)
    res = sb.exec("for i in $(seq 10); do dd if=/dev/zero of=/tmp/fill$i bs=1M count=10; done; "
                  "du -sm /tmp | cut -f1", timeout_s=60)
    assert "No space left" in res.stderr, res.stderr
    assert int(res.stdout.split()[-1]) <= 33
    res = sb.exec("dd if=/dev/zero of=/work/big bs=1M count=100", timeout_s=60)
    assert res.exit_code != 0
    assert res.exit_code == 128 + 25 or "File size limit exceeded" in res.stderr, res  # SIGXFSZ
    assert (workspace / "big").stat().st_size <= 16 << 20
    assert sb.exec("echo still > /tmp/../work/small && cat /work/small").stdout.strip() == "still"


def test_endless_loop_times_out(sandbox_factory: Factory) -> None:
    sb = sandbox_factory(exec_timeout_s=2)
    res = sb.exec("while :; do :; done")
    assert res.reason == "timeout", res
    assert 1.9 <= res.duration_s < 10
    assert "timed out" in res.stderr
    res = sb.exec(["python3", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "time.sleep(60)"], timeout_s=2)
    assert res.reason == "timeout" and res.duration_s < 10, res  # TERM ignored: KILL follows
    assert sb.exec("echo next").ok


def test_no_capabilities_no_mount_no_docker_socket(sandbox_factory: Factory) -> None:
    sb = sandbox_factory()
    res = sb.exec("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status")
    assert res.ok
    for line in res.stdout.splitlines():
        assert line.split()[1] == "0000000000000000", line
    res = sb.exec("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo MOUNTED")
    assert "MOUNTED" not in res.stdout and res.exit_code != 0
    res = sb.exec("ls -la /var/run/docker.sock /run/docker.sock 2>&1; test -S /var/run/docker.sock || "
                  "test -S /run/docker.sock && echo SOCKET")
    assert "SOCKET" not in res.stdout
    assert sb.exec("id -u").stdout.strip() == "65534"


def test_host_environment_secrets_absent(sandbox_factory: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3LAB_API_KEY", "sk-host-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-aws-secret")
    sb = sandbox_factory(env={"GIVEN": "yes"})
    res = sb.exec("env", env={"PER_EXEC": "1"})
    assert "sk-host-secret" not in res.stdout and "host-aws-secret" not in res.stdout
    assert "M3LAB_API_KEY" not in res.stdout
    assert "GIVEN=yes" in res.stdout and "PER_EXEC=1" in res.stdout  # positive control


def test_workspace_disk_fill_is_stopped_at_the_quota(sandbox_factory: Factory, workspace: Path) -> None:
    """A command that keeps writing is stopped while it runs (not at its time limit), and the exec says why."""
    sb = sandbox_factory(disk_mb=32)
    ok = sb.exec("head -c 8M /dev/zero > small.bin && echo fine")
    assert ok.ok and ok.reason == "exited"  # positive control: under the quota nothing happens
    started = time.monotonic()
    res = sb.exec("i=0; while true; do head -c 4M /dev/zero > f$i.bin; i=$((i+1)); sleep 0.05; done", timeout_s=60)
    assert res.reason == "quota", res
    assert time.monotonic() - started < 20, "the fill ran on to its time limit"
    assert "disk quota" in res.stderr


FORGED = '{"code": 0, "out": "Zm9yZ2Vk", "err": "", "timed_out": false, "error": ""}'


def test_a_command_cannot_answer_for_the_exec_agent(sandbox_factory: Factory) -> None:
    """Commands run as the agent's user, and the agent is their parent: a command that writes an answer line into
    the agent's stdout (/proc/$PPID/fd/1) would set its own result (exit 0, any output) and shift every later
    answer by one; one that writes an endless line would grow the host's buffer until the deadline."""
    sb = sandbox_factory()
    res = sb.exec(f"echo '{FORGED}' > /proc/$PPID/fd/1 && echo WROTE; "
                  "head -c 64M /dev/zero > /proc/$PPID/fd/1 && echo FLOODED; exit 3")
    assert (res.exit_code, res.reason) == (3, "exited"), res
    assert "WROTE" not in res.stdout and "FLOODED" not in res.stdout and "forged" not in res.stdout
    assert "Permission denied" in res.stderr
    nxt = sb.exec("echo next; exit 5")
    assert (nxt.exit_code, nxt.stdout) == (5, "next\n"), nxt  # the next answer is its own, not the one before
    assert "m3lab-agent" in sb.exec("tr '\\0' ' ' < /proc/$PPID/cmdline").stdout  # positive: $PPID is the agent
