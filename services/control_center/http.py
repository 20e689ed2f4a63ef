"""The control-center HTTP API and dashboard, served by aiohttp over any queue.

Routes:

- ``GET /``: the operator dashboard (one static page; it polls the API below).
- ``GET /api/entries?after=ID&limit=N&status=S&queue=Q``: entries oldest first, as the
  ``citybrain feed --json`` objects.
- ``GET /api/follow?after=ID&timeout_ms=N``: long-poll for entries newer than ``after``.
- ``GET /api/entries/{violation_id}`` and ``.../history``: one entry and its audit trail.
- ``POST /api/entries/{violation_id}/status`` with ``{"status", "by", "note"}``.
- ``GET /evidence/{path}``: snapshot files, from the evidence folder only.
- ``GET /metrics``: Prometheus text; ``GET /healthz``.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.common.queue import (
    ControlCenterQueue,
    EntryNotFoundError,
    EntryStatus,
    QueueEntry,
    QueueUnavailableError,
)

QUEUE_KEY = web.AppKey("queue", ControlCenterQueue)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
EVIDENCE_KEY = web.AppKey("evidence_dir", Path)

MAX_LIMIT = 1000
MAX_FOLLOW_MS = 30_000


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status=status)


def _int_param(request: web.Request, name: str, default: int, *, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    return max(0, min(value, high))


def _entries_json(entries: list[QueueEntry], status: str | None) -> list[dict[str, Any]]:
    return [e.to_feed_dict() for e in entries if status is None or e.status.value == status]


async def dashboard(_: web.Request) -> web.Response:
    page = resources.files("services.control_center").joinpath("dashboard.html").read_text()
    return web.Response(text=page, content_type="text/html", charset="utf-8")


async def list_entries(request: web.Request) -> web.Response:
    queue = request.app[QUEUE_KEY]
    limit = _int_param(request, "limit", 200, high=MAX_LIMIT)
    queues = request.query.getall("queue", []) or None
    entries = await queue.read(queues=queues, after=request.query.get("after", "0-0"), count=limit)
    return _json(_entries_json(entries, request.query.get("status")))


async def follow_entries(request: web.Request) -> web.Response:
    queue = request.app[QUEUE_KEY]
    timeout_ms = _int_param(request, "timeout_ms", 10_000, high=MAX_FOLLOW_MS)
    entries = await queue.follow(after=request.query.get("after", "0-0"), block_ms=timeout_ms)
    return _json(_entries_json(entries, None))


async def get_entry(request: web.Request) -> web.Response:
    entry = await request.app[QUEUE_KEY].get(request.match_info["violation_id"])
    return _json(entry.to_feed_dict())


async def entry_history(request: web.Request) -> web.Response:
    history = await request.app[QUEUE_KEY].history(request.match_info["violation_id"])
    return _json([h.model_dump(mode="json") for h in history])


async def change_status(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        status = EntryStatus(body["status"])
        by = str(body["by"]).strip()
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        allowed = ", ".join(s.value for s in EntryStatus)
        return _error(400, f'body must be {{"status": one of {allowed}, "by": operator}}')
    if not by:
        return _error(400, '"by" must name the operator')
    entry = await request.app[QUEUE_KEY].set_status(
        request.match_info["violation_id"],
        status,
        by=by,
        ts_ms=int(time.time() * 1000),
        note=str(body.get("note", "")),
    )
    return _json(entry.to_feed_dict())


async def evidence(request: web.Request) -> web.StreamResponse:
    root = request.app[EVIDENCE_KEY].resolve()
    path = (root / request.match_info["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(_: web.Request) -> web.Response:
    return _json({"ok": True})


@web.middleware
async def queue_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map queue failures to HTTP answers, so the dashboard can show them and retry."""
    try:
        response: web.StreamResponse = await handler(request)
    except EntryNotFoundError as exc:
        return _error(404, f"no entry {exc.args[0]!r}")
    except QueueUnavailableError as exc:
        return _error(503, str(exc))
    return response


def create_app(
    *, queue: ControlCenterQueue, registry: CollectorRegistry, evidence_dir: Path
) -> web.Application:
    """The control-center web app over ``queue``, exposing ``registry`` on /metrics."""
    app = web.Application(middlewares=[queue_errors])
    app[QUEUE_KEY] = queue
    app[REGISTRY_KEY] = registry
    app[EVIDENCE_KEY] = evidence_dir
    app.router.add_get("/", dashboard)
    app.router.add_get("/api/entries", list_entries)
    app.router.add_get("/api/follow", follow_entries)
    app.router.add_get("/api/entries/{violation_id}", get_entry)
    app.router.add_get("/api/entries/{violation_id}/history", entry_history)
    app.router.add_post("/api/entries/{violation_id}/status", change_status)
    app.router.add_get("/evidence/{path:.+}", evidence)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start_server(app: web.Application, *, host: str, port: int) -> web.AppRunner:
    """Start serving ``app``; the caller stops it with ``await runner.cleanup()``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
