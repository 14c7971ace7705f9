"""The viewer's HTTP app (Starlette): a JSON API over RunStore, server-sent events, and the static page.

Routes
  GET  /                                   the single-page app (static/index.html)
  GET  /api/runs                           runs-page rows
  GET  /api/runs/{id}                      run.json, timeline, last events, task view
  GET  /api/runs/{id}/events?before=&limit= older events (byte-offset pagination)
  GET  /api/runs/{id}/timeline?before=&limit= earlier iterations of the timeline
  GET  /api/runs/{id}/stream?offset=       server-sent events: new events and run.json changes
  GET  /api/runs/{id}/iterations/{n}       iteration file, its diff, events and log files
  GET  /api/runs/{id}/files/{path}         a file of the run (artifacts, logs, report)
  POST /api/runs/{id}/steer  {"text": ...} orchestrator.control.add_steer
  POST /api/runs/{id}/stop                 orchestrator.control.request_stop
  GET  /login?code=                        one-time login of a token-protected viewer (guard.py)
"""
from __future__ import annotations

import asyncio
import json
import math
import mimetypes
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator import control, eventlog
from orchestrator.store import StoreSettings
from orchestrator.viewer import gitdiff, taskviews
from orchestrator.viewer.guard import Access, Guard
from orchestrator.viewer.store import RunNotFound, RunStore, UnsafePath, summarize

STATIC = Path(__file__).parent / "static"
POLL_S = 0.3
HEARTBEAT_S = 15.0
TAIL_EVENTS = 200
TIMELINE_PAGE = 100
MAX_PAGE = 2000


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(data: Any) -> str:
    """JSON of run data as stored, always valid for a browser: text a model or a sandbox wrote may hold lone
    surrogates (escaped here) and a model's numbers may be NaN or infinite (null here); either would otherwise
    fail the whole page, hiding the run or iteration it belongs to."""
    return json.dumps(_finite(data), ensure_ascii=True, separators=(",", ":"), default=str)


class RunJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content).encode("ascii")


def _store(request: Request) -> RunStore:
    return request.app.state.store


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    """A non-negative integer query parameter; ValueError (HTTP 400) for anything else."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


async def list_runs(request: Request) -> Response:
    rows = _store(request).list_runs()
    return RunJSON({"runs": [r.to_json() for r in rows], "runs_dir": str(_store(request).runs_dir)})


async def run_detail(request: Request) -> Response:
    store, run_id = _store(request), request.path_params["run_id"]
    meta = store.run_meta(run_id)
    summary = summarize(run_id, meta)
    numbers = store.iteration_numbers(run_id)
    run_dir = store.run_dir(run_id)
    page = eventlog.tail(run_dir / "events.jsonl", TAIL_EVENTS)
    return RunJSON({
        "summary": summary.to_json(),
        "meta": meta,
        "timeline": store.iteration_rows(run_id, numbers[-TIMELINE_PAGE:]),
        "iterations_total": len(numbers),
        "events": page.to_json(),
        "task": taskviews.task_view(run_dir, summary.kind),
        "stop_requested": control.stop_requested(run_dir),
    })


async def older_events(request: Request) -> Response:
    run_dir = _store(request).run_dir(request.path_params["run_id"])
    limit = min(_int_param(request, "limit", TAIL_EVENTS) or TAIL_EVENTS, MAX_PAGE)
    page = eventlog.tail(run_dir / "events.jsonl", limit, before=_int_param(request, "before", None))
    return RunJSON(page.to_json())


async def timeline(request: Request) -> Response:
    """Timeline rows of the iterations before `before` (the page shows the latest ones first)."""
    store, run_id = _store(request), request.path_params["run_id"]
    numbers = store.iteration_numbers(run_id)
    before = _int_param(request, "before", None)
    limit = min(_int_param(request, "limit", TIMELINE_PAGE) or TIMELINE_PAGE, MAX_PAGE)
    if before is not None:
        numbers = [n for n in numbers if n < before]
    return RunJSON({"timeline": store.iteration_rows(run_id, numbers[-limit:]), "remaining": max(0, len(numbers) - limit)})


def _sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {dumps(data)}\n\n"


async def _follow(request: Request, run_dir: Path, offset: int) -> AsyncIterator[str]:
    """New events from `offset` on, and the run summary whenever run.json changes, until the client leaves."""
    log, meta_path = run_dir / "events.jsonl", run_dir / "run.json"
    last_mtime, idle = None, 0.0
    while not await request.is_disconnected() and not request.app.state.stopping.is_set():
        sent = False
        page = eventlog.read_from(log, offset)
        if page.events:
            offset = page.end
            yield _sse("events", page.to_json(), offset)
            sent = True
        mtime = meta_path.stat().st_mtime_ns if meta_path.exists() else None
        if mtime != last_mtime:
            last_mtime = mtime
            try:
                meta = _store(request).run_meta(run_dir.name)
            except RunNotFound:  # removed or unreadable for a moment: try again at the next poll
                last_mtime = None
            else:
                data = {"summary": summarize(run_dir.name, meta).to_json(), "meta": meta,
                        "stop_requested": control.stop_requested(run_dir)}
                yield _sse("run", data)
                sent = True
        idle = 0.0 if sent else idle + POLL_S
        if idle >= HEARTBEAT_S:
            idle = 0.0
            yield ": heartbeat\n\n"
        if not page.events:
            await asyncio.sleep(POLL_S)


async def stream(request: Request) -> Response:
    run_dir = _store(request).run_dir(request.path_params["run_id"])
    # A reconnecting EventSource sends the last id it saw: the byte offset to resume from.
    resume = request.headers.get("last-event-id")
    offset = int(resume) if resume and resume.isdigit() else _int_param(request, "offset", None)
    if offset is None:
        offset = eventlog.file_end(run_dir / "events.jsonl")
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_follow(request, run_dir, offset), media_type="text/event-stream", headers=headers)


async def iteration_detail(request: Request) -> Response:
    store, run_id = _store(request), request.path_params["run_id"]
    number = int(request.path_params["number"])
    record = store.iteration(run_id, number)
    run_dir = store.run_dir(run_id)
    try:
        diff: dict[str, Any] = gitdiff.iteration_diff(run_dir, number, record.commit).to_json()
    except gitdiff.DiffUnavailable as exc:
        diff = {"error": str(exc)}
    page, truncated = eventlog.iteration_events(run_dir / "events.jsonl", number)
    return RunJSON({
        "iteration": record.to_json(),
        "diff": diff,
        "events": page.events,
        "events_truncated": truncated,
        "logs": store.log_files(run_id, number),
        "artifacts": store.artifact_files(run_id, number),
    })


async def run_file(request: Request) -> Response:
    relative = request.path_params["path"]
    data = _store(request).file(request.path_params["run_id"], relative)
    # Run files are written by generated code: never let an HTML report run scripts on the viewer's origin.
    headers = {"Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
               "X-Content-Type-Options": "nosniff"}
    media_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/json", "image/svg+xml"):
        media_type += "; charset=utf-8"
    return Response(data, media_type=media_type, headers=headers)


async def _json_body(request: Request) -> dict[str, Any]:
    """The body of a control request. JSON only: a cross-site form cannot send it without a CORS preflight."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ValueError("control requests must be application/json")
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


async def steer(request: Request) -> Response:
    run_dir = _store(request).run_dir(request.path_params["run_id"])
    body = await _json_body(request)
    control.add_steer(run_dir, str(body.get("text", "")))
    return RunJSON({"ok": True})


async def stop(request: Request) -> Response:
    run_dir = _store(request).run_dir(request.path_params["run_id"])
    body = await _json_body(request)
    control.request_stop(run_dir, str(body.get("reason") or "user"))
    return RunJSON({"ok": True, "stop_requested": control.stop_requested(run_dir)})


async def _not_found(request: Request, exc: Exception) -> Response:
    return RunJSON({"error": str(exc)}, status_code=404)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return RunJSON({"error": str(exc)}, status_code=400)


def create_app(runs_dir: Path, access: Access | None = None, store: StoreSettings | None = None) -> Starlette:
    """The viewer app over the runs in `runs_dir` (which may not exist yet: the page then lists none), behind
    `access` (viewer/guard.py: Host allow-list, Origin check on POSTs, token beyond loopback); the default
    is a loopback viewer's policy. With a PostgreSQL `store`, the run list is read from its run index."""
    routes = [
        Route("/", index),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run_id}", run_detail),
        Route("/api/runs/{run_id}/events", older_events),
        Route("/api/runs/{run_id}/timeline", timeline),
        Route("/api/runs/{run_id}/stream", stream),
        Route("/api/runs/{run_id}/iterations/{number:int}", iteration_detail),
        Route("/api/runs/{run_id}/files/{path:path}", run_file),
        Route("/api/runs/{run_id}/steer", steer, methods=["POST"]),
        Route("/api/runs/{run_id}/stop", stop, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    handlers = {RunNotFound: _not_found, UnsafePath: _bad_request, ValueError: _bad_request}
    access = access or Access.for_bind("127.0.0.1")
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(Guard, access=access)])
    app.state.store = RunStore(runs_dir, store)
    app.state.stopping = threading.Event()
    app.state.access = access
    return app
