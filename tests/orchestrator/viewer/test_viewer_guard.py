"""Who may talk to the viewer (issue 12): real servers on loopback (127.0.0.1, 127.0.0.2, ::1) and on all
interfaces, probed with foreign Host and Origin headers, with and without the token."""
from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from orchestrator.viewer.guard import COOKIE
from orchestrator.viewer.server import ViewerServer

from .builder import RunBuilder

RUN = "20261126-code-a1"


@pytest.fixture()
def one_run(runs_dir: Path) -> Path:
    run = RunBuilder(runs_dir, RUN, "code", "guarded")
    run.iteration(1, {"a.py": "x = 1\n"}, verdict="pass", score=1.0)
    return runs_dir


def _stop(url: str, **headers: str) -> int:
    return httpx.post(f"{url}/api/runs/{RUN}/stop", json={"reason": "t"}, headers=headers).status_code


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1"])
def test_loopback_binds_need_no_token_but_refuse_foreign_hosts_and_origins(one_run: Path, bind: str) -> None:
    with ViewerServer(one_run, host=bind, port=0) as server:
        assert server.login_url is None
        assert httpx.get(f"{server.url}/api/runs").status_code == 200
        assert httpx.get(f"{server.url}/api/runs", headers={"Host": f"evil.example:{server.port}"}).status_code == 400
        assert httpx.get(f"{server.url}/api/runs", headers={"Host": "10.0.0.5"}).status_code == 400
        assert _stop(server.url, Origin="http://evil.example") == 403
        assert _stop(server.url, **{"Sec-Fetch-Site": "cross-site"}) == 403
        assert _stop(server.url, Origin=server.url) == 200  # the page itself


def test_a_non_loopback_bind_requires_the_token(one_run: Path) -> None:
    with ViewerServer(one_run, host="0.0.0.0", port=0) as server:
        url = f"http://127.0.0.1:{server.port}"
        token = server.access.token
        assert token and server.login_url and token not in server.login_url
        # Without the token: nothing, not even the page or the run list; steer/stop refused.
        for path in ("/", "/api/runs", f"/api/runs/{RUN}", f"/api/runs/{RUN}/iterations/1"):
            assert httpx.get(url + path).status_code == 401, path
        assert _stop(url) == 401
        assert httpx.get(f"{url}/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/runs", headers=bearer).status_code == 200
        assert _stop(url, **bearer) == 200
        # A foreign Host or Origin is refused even with the token.
        assert httpx.get(f"{url}/api/runs", headers={**bearer, "Host": "evil.example"}).status_code == 400
        assert _stop(url, **bearer, Origin="http://evil.example") == 403
        # The one-time login URL sets the cookie once.
        login = server.login_url
        assert login.startswith(f"http://{socket.gethostname()}:{server.port}/login?code=")
        login = login.replace(socket.gethostname(), "127.0.0.1", 1)
        first = httpx.get(login)
        assert first.status_code == 303 and first.cookies.get(COOKIE) == token
        assert "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
        assert httpx.get(login).status_code == 403  # used up
        assert httpx.get(f"{url}/api/runs", cookies={COOKIE: token}).status_code == 200


def test_task_views_and_files_never_follow_links(one_run: Path, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST SECRET 42\n")
    run = one_run / RUN
    (run / "artifacts" / "kernel" / "best").mkdir(parents=True)
    (run / "artifacts" / "kernel" / "best" / "candidate.py").symlink_to(secret)
    (run / "artifacts" / "kernel" / "candidates.csv").symlink_to(secret)
    (run / "artifacts" / "paper" / "tables").mkdir(parents=True)
    (run / "artifacts" / "paper" / "tables" / "t1.paper.txt").symlink_to(secret)
    (run / "artifacts" / "paper" / "rubric.json").symlink_to(secret)
    (run / "workspace" / "outside").symlink_to(tmp_path)
    from orchestrator.viewer import taskviews

    assert "HOST SECRET" not in str(taskviews.kernel_view(run)) + str(taskviews.paper_view(run))
    with ViewerServer(one_run, port=0) as server:
        for rel in ("artifacts/kernel/best/candidate.py", "workspace/outside/host-secret.txt", "../host-secret.txt"):
            response = httpx.get(f"{server.url}/api/runs/{RUN}/files/{rel}")
            assert response.status_code in (400, 404) and "HOST SECRET" not in response.text, rel
