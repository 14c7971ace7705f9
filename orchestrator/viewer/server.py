"""Serving the viewer: bind (loopback by default), run uvicorn, stop cleanly.

`serve` blocks (the `m3lab ui` command); `ViewerServer` runs in a background thread (tests, benchmarks).
"""
from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path

from orchestrator.store.settings import StoreSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class PortBusy(OSError):
    """The port is already taken on that host."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; PortBusy with a message naming the way out when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(f"port {port} on {host} is already in use; choose another with --port") from exc
        raise
    # Accepted sockets inherit this: without it, small responses on a kept-alive connection wait ~40 ms for
    # the client's delayed ACK (measured: 44 ms -> 2 ms per API call).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class ViewerServer:
    """The viewer on a socket it bound itself, served by uvicorn in a daemon thread."""

    def __init__(self, runs_dir: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 allow_hosts: tuple[str, ...] = (), token: str | None = None,
                 store: StoreSettings | None = None) -> None:
        """A loopback host needs no token; any other bind gets one (`token`, or a generated one) and its
        one-time `login_url`. `store` (StoreSettings): list runs from its run index when it is PostgreSQL."""
        import uvicorn

        from orchestrator.viewer.app import create_app
        from orchestrator.viewer.guard import Access

        self.access = Access.for_bind(host, allow_hosts, token)
        self.app = create_app(runs_dir, self.access, store)
        self.sock = bind(host, port)
        self.host, self.port = host, self.sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def login_url(self) -> str | None:
        """The one-time URL that sets the token cookie (None for a loopback viewer without a token)."""
        if self.host in ("0.0.0.0", "::"):  # a wildcard bind: this machine's name reaches it (and is allowed)
            return self.access.login_url(f"http://{socket.gethostname()}:{self.port}")
        return self.access.login_url(self.url)

    def run(self) -> None:
        """Serve in the calling thread until interrupted."""
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self.app.state.stopping.set()
            self.sock.close()

    def start(self, timeout_s: float = 10.0) -> ViewerServer:
        """Serve in a background thread; returns once the server accepts connections."""
        self._thread = threading.Thread(target=self.run, name="m3lab-viewer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"viewer did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit (open event streams end at their next poll) and wait for the thread."""
        self.app.state.stopping.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
