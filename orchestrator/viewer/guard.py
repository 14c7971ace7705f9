"""Who may talk to the viewer: a Host allow-list derived from the bind, an Origin check on every POST, and a token
for any bind beyond loopback.

- Host: a loopback viewer answers only to loopback names and addresses, so a page whose DNS name rebinds to
  127.0.0.1 (or ::1, or 127.0.0.2) cannot drive it; a viewer on another address answers to IP literals, this
  machine's names and the names given with `--allow-host`.
- Origin: a POST (steer, stop) carrying an Origin must come from the viewer's own origin; `Sec-Fetch-Site:
  cross-site` is refused too.
- Token: any non-loopback bind needs it. It is printed once at start, inside a one-time login URL that sets it
  as an HttpOnly, SameSite=Strict cookie; scripts send it as `Authorization: Bearer <token>`.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse

COOKIE = "m3lab_viewer_token"
LOGIN_PATH = "/login"
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """True for `localhost` and every loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a Host header (`[::1]:8765` -> `::1`, `example:80` -> `example`), lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


@dataclass
class Access:
    """The viewer's access policy, fixed when it binds."""

    bind_host: str
    extra_hosts: tuple[str, ...] = ()
    token: str | None = None
    login_code: str | None = None
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        bind = host_name(self.bind_host) if self.bind_host.startswith("[") else self.bind_host.lower()
        names = {bind, *(h.lower() for h in self.extra_hosts)}
        if is_loopback(bind):
            names |= {"localhost", "127.0.0.1", "::1"}
        else:
            names |= {"localhost", socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(n for n in names if n)

    @classmethod
    def for_bind(cls, host: str, extra_hosts: tuple[str, ...] = (), token: str | None = None) -> Access:
        """Loopback binds need no token; any other bind gets one (generated unless given)."""
        if is_loopback(host) and token is None:
            return cls(host, extra_hosts)
        return cls(host, extra_hosts, token or secrets.token_urlsafe(32), secrets.token_urlsafe(24))

    def host_ok(self, name: str) -> bool:
        if name in self.names:
            return True
        # IP literals cannot be rebound by DNS; a non-loopback viewer is reached by its addresses.
        return not is_loopback(self.bind_host) and _is_ip(name)

    def login_url(self, base_url: str) -> str | None:
        return f"{base_url}{LOGIN_PATH}?code={self.login_code}" if self.login_code else None

    def authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        auth = request.headers.get("authorization", "")
        offered = auth[7:].strip() if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        return bool(offered) and hmac.compare_digest(offered.encode(), self.token.encode())

    def redeem(self, code: str) -> bool:
        """The one-time login code: valid once."""
        if self.login_code and code and hmac.compare_digest(code.encode(), self.login_code.encode()):
            self.login_code = None
            return True
        return False


def _origin_ok(request: Request) -> bool:
    """A POST from a browser must come from the viewer's own origin (scheme://Host)."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser (curl, scripts): the token, where needed, is their check
    return origin.lower() == f"{request.url.scheme}://{request.headers.get('host', '').lower()}"


class Guard:
    """ASGI middleware enforcing an `Access` on every HTTP request."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self._refusal(request)
        await (response or self.app)(scope, receive, send)

    def _refusal(self, request: Request) -> Any:
        access = self.access
        if not access.host_ok(host_name(Headers(scope=request.scope).get("host", ""))):
            return JSONResponse({"error": "invalid Host header for this viewer"}, status_code=400)
        if request.method not in ("GET", "HEAD") and not _origin_ok(request):
            return JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        if request.url.path == LOGIN_PATH and access.token is not None:
            if not access.redeem(request.query_params.get("code", "")):
                return JSONResponse({"error": "login code invalid or already used"}, status_code=403)
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, access.token, httponly=True, samesite="strict", path="/")
            return response
        if not access.authorized(request):
            return JSONResponse({"error": "this viewer needs its token: open the login URL printed when it started, "
                                          "or send Authorization: Bearer <token>"}, status_code=401)
        return None

