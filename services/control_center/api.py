"""The control-center HTTP service: dashboard, JSON API, live stream, /metrics, /healthz.

One FastAPI app over any :class:`ControlCenterQueue`; ``citybrain control-center`` serves it
on Redis alone and ``citybrain run`` mounts the same app. The OpenAPI document at
``/api/openapi.json`` is generated from these routes and models.

Every request that reads needs a bearer token unless the operators file says
``open_reads: true``; every write needs one, and the operator recorded is its owner. Writes
take ``application/json`` only, from the same origin only, and small bodies only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Header, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.events import ViolationType
from services.common.queue import (
    ControlCenterQueue,
    EntryFilter,
    EntryNotFoundError,
    EntryStatus,
    QueueEntry,
    QueueUnavailableError,
    StatusConflictError,
)
from services.common.queue.archive import ArchivedQueue, SQLiteArchive
from services.control_center.auth import Authenticator, AuthError, FailureLimiter
from services.control_center.config import ControlCenterConfig
from services.control_center.metrics import ControlCenterMetrics
from services.control_center.operators import Operator, OperatorStore
from services.control_center.retention import run_retention
from services.control_center.stream import ChangeFeed, event_stream
from services.control_center.workflow import ForbiddenChangeError, allowed_from, next_statuses

MAX_BODY_BYTES = 16_384
MAX_NOTE_CHARS = 1_000
MAX_PAGE = 500
MAX_SERIES_MINUTES = 24 * 60
# Filter values are names from the catalogue and event schema: short, plain characters.
_NAME = r"^[A-Za-z0-9._:-]{1,64}$"
_EVIDENCE_PATH = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class ApiError(BaseModel):
    """Every error answer: one line saying what is wrong."""

    error: str


class EntryView(BaseModel):
    """An entry as ``citybrain feed --json`` prints it: the violation fields (unknown extra
    fields kept), the dispatch fields and the entry's state."""

    model_config = ConfigDict(extra="allow")

    violation_id: str
    type: ViolationType
    camera_id: str
    city: str
    district: str
    priority: str
    ts_ms: int
    dispatched_ts_ms: int
    snapshot: str | None = None
    entry_id: str
    queue: str
    status: EntryStatus
    status_by: str | None = None
    status_ts_ms: int | None = None
    version: int
    repeat_count: int
    archived: bool


class EntryPageView(BaseModel):
    entries: list[EntryView]
    next_cursor: int | None = Field(description="pass as cursor for the next (older) page")
    last_change_id: str = Field(
        description="the change-log position this page was read at; resume /api/stream here"
    )


class HistoryView(BaseModel):
    violation_id: str
    status: EntryStatus
    from_status: EntryStatus
    operator: str
    ts_ms: int
    note: str
    version: int


class StatusRequest(BaseModel):
    """A status change; the operator is the token's owner."""

    model_config = ConfigDict(extra="forbid")

    status: EntryStatus
    note: str = Field(default="", max_length=MAX_NOTE_CHARS)
    version: int | None = Field(
        default=None,
        ge=0,
        le=2**31,
        description="the version the operator saw; the change fails with 409 if it moved on",
    )


class ConflictView(BaseModel):
    error: str
    current: EntryView


class CountsView(BaseModel):
    by_status: dict[str, int]
    by_type: dict[str, int]
    by_city: dict[str, int]


class SeriesView(BaseModel):
    since_ms: int
    minute_ms: int
    series: dict[str, list[int]] = Field(description="entries queued per minute, by type")


class MeView(BaseModel):
    name: str | None
    role: str | None
    may_set: dict[str, list[EntryStatus]] = Field(
        description="for each current status, the statuses this operator may set"
    )


@dataclass(frozen=True, slots=True)
class Services:
    queue: ControlCenterQueue
    auth: Authenticator
    feed: ChangeFeed
    metrics: ControlCenterMetrics
    registry: CollectorRegistry
    evidence_dir: Path
    config: ControlCenterConfig


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, **headers: str) -> Response:
    return _json({"error": message}, status=status, headers=headers or None)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ApiError} for code in codes}


_bearer = HTTPBearer(auto_error=False, description="an operator token (citybrain operators add)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def create_app(
    *,
    queue: ControlCenterQueue,
    operators: OperatorStore,
    registry: CollectorRegistry,
    evidence_dir: Path,
    config: ControlCenterConfig | None = None,
    archive: SQLiteArchive | None = None,
) -> FastAPI:
    """The control-center app over ``queue``, exposing ``registry`` on /metrics.

    With an ``archive``, reads fall back to it and retention moves closed entries there in
    the background while the app runs.
    """
    config = config or ControlCenterConfig()
    served = queue if archive is None else ArchivedQueue(queue, archive)
    services = Services(
        queue=served,
        auth=Authenticator(
            store=operators,
            limiter=FailureLimiter(
                max_failures=config.auth.max_failures, window_s=config.auth.failure_window_s
            ),
        ),
        feed=ChangeFeed(served, buffer=config.stream.client_buffer),
        metrics=ControlCenterMetrics.create(registry),
        registry=registry,
        evidence_dir=evidence_dir,
        config=config,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.feed.start()
        retention = None
        if archive is not None:
            retention = asyncio.create_task(
                run_retention(queue, archive, settings=config.retention, metrics=services.metrics),
                name="retention",
            )
        try:
            yield
        finally:
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            await services.feed.stop()

    app = FastAPI(
        title="citybrain control center",
        version="1",
        description="Violations queued for operators: read, filter, follow live, and work them.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    _install_guards(app, services)
    _install_routes(app, services)
    return app


def _install_guards(app: FastAPI, s: Services) -> None:
    """Error mapping, request metrics, and the checks every write passes first."""

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, exc: AuthError) -> Response:
        s.metrics.auth_failures.inc()
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after_s is not None:
            headers["Retry-After"] = str(exc.retry_after_s)
        return _error(exc.status, exc.message, **headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(400, "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(EntryNotFoundError)
    async def not_found(_: Request, exc: EntryNotFoundError) -> Response:
        return _error(404, f"no entry {exc.args[0]!r}")

    @app.exception_handler(QueueUnavailableError)
    async def unavailable(_: Request, exc: QueueUnavailableError) -> Response:
        return _error(503, str(exc), **{"Retry-After": "1"})

    app.add_middleware(_Guard, metrics=s.metrics)


class _Guard:
    """Refuses bad writes before they are read, counts and times every answer (to its first
    byte, so a stream counts once), and marks every answer nosniff. Plain ASGI, so the
    bytes of the live streams pass through untouched."""

    def __init__(self, app: ASGIApp, *, metrics: ControlCenterMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("X-Content-Type-Options", "nosniff")
                route = getattr(scope.get("route"), "path", "unmatched")
                code = str(message["status"])
                self._metrics.requests.labels(route=route, code=code).inc()
                elapsed_s = time.perf_counter() - started
                self._metrics.request_seconds.labels(route=route).observe(elapsed_s)
            await send(message)

        if scope["method"] in _UNSAFE_METHODS:
            refusal = _refuse_write(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, answer)
                return
        await self._app(scope, receive, answer)


def _refuse_write(request: Request) -> Response | None:
    """Why a write must be refused before it is read, or None: only same-origin JSON
    bodies of a bounded size (a cross-site form or a text/plain POST is refused)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and urlsplit(origin).netloc != host:
        return _error(403, f"cross-site request from {origin} refused")
    if request.headers.get("sec-fetch-site") == "cross-site":
        return _error(403, "cross-site request refused")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        return _error(415, "send the body as Content-Type: application/json")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        return _error(411, "send a Content-Length")
    if int(length) > MAX_BODY_BYTES:
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    return None


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _reader(request: Request, credentials: Credentials) -> Operator | None:
    token = credentials.credentials if credentials else None
    return await _services(request).auth.reader(token, client=_client(request))


async def _writer(request: Request, credentials: Credentials) -> Operator:
    token = credentials.credentials if credentials else None
    return await _services(request).auth.writer(token, client=_client(request))


Reader = Annotated[Operator | None, Depends(_reader)]
Writer = Annotated[Operator, Depends(_writer)]
ViolationId = Annotated[str, PathParam(min_length=1, max_length=256)]
FilterName = Annotated[str | None, Query(pattern=_NAME)]
EventId = r"^\d{1,15}-\d{1,19}$"


def _install_routes(app: FastAPI, s: Services) -> None:
    app.state.services = s

    @app.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return _static("dashboard.html", "text/html; charset=utf-8")

    @app.get("/dashboard.js", include_in_schema=False)
    async def dashboard_js() -> Response:
        return _static("dashboard.js", "text/javascript; charset=utf-8")

    @app.get("/dashboard.css", include_in_schema=False)
    async def dashboard_css() -> Response:
        return _static("dashboard.css", "text/css; charset=utf-8")

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/metrics", tags=["service"], response_class=Response)
    async def metrics() -> Response:
        s.metrics.stream_clients.set(s.feed.clients)
        return Response(generate_latest(s.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/me", tags=["operators"], responses={200: {"model": MeView}, **_errors(401, 429)})
    async def me(who: Reader) -> Response:
        if who is None:
            return _json({"name": None, "role": None, "may_set": {}})
        may = {st.value: [t.value for t in next_statuses(who.role, st)] for st in EntryStatus}
        return _json({"name": who.name, "role": who.role.value, "may_set": may})

    @app.get(
        "/api/entries",
        tags=["entries"],
        responses={200: {"model": EntryPageView}, **_errors(400, 401, 429, 503)},
    )
    async def list_entries(
        _: Reader,
        *,
        city: FilterName = None,
        district: FilterName = None,
        type: ViolationType | None = None,
        status: EntryStatus | None = None,
        priority: FilterName = None,
        camera_id: FilterName = None,
        since_ms: Annotated[int | None, Query(ge=0, le=2**53)] = None,
        until_ms: Annotated[int | None, Query(ge=0, le=2**53)] = None,
        cursor: Annotated[int | None, Query(ge=0, le=2**62, description="next_cursor")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> Response:
        """Entries newest first, filtered in the store, a page at a time."""
        where = EntryFilter(
            city=city,
            district=district,
            type=type.value if type else None,
            status=status,
            priority=priority,
            camera_id=camera_id,
            since_ms=since_ms,
            until_ms=until_ms,
        )
        position = await s.queue.last_change_id()
        page = await s.queue.query(where, before=cursor, limit=limit)
        return _json(
            {
                "entries": [e.to_feed_dict() for e in page.entries],
                "next_cursor": page.next_cursor,
                "last_change_id": position,
            }
        )

    @app.get(
        "/api/entries/{violation_id}",
        tags=["entries"],
        responses={200: {"model": EntryView}, **_errors(400, 401, 404, 429, 503)},
    )
    async def get_entry(_: Reader, violation_id: ViolationId) -> Response:
        return _json((await s.queue.get(violation_id)).to_feed_dict())

    @app.get(
        "/api/entries/{violation_id}/history",
        tags=["entries"],
        responses={200: {"model": list[HistoryView]}, **_errors(400, 401, 404, 429, 503)},
    )
    async def entry_history(_: Reader, violation_id: ViolationId) -> Response:
        history = await s.queue.history(violation_id)
        return _json([h.model_dump(mode="json") for h in history])

    @app.post(
        "/api/entries/{violation_id}/status",
        tags=["entries"],
        responses={
            200: {"model": EntryView},
            409: {"model": ConflictView},
            **_errors(400, 401, 403, 404, 411, 413, 415, 429, 503),
        },
    )
    async def change_status(
        who: Writer, violation_id: ViolationId, change: StatusRequest
    ) -> Response:
        """Move an entry along the workflow; 409 with the current entry if it is not there."""
        try:
            sources = allowed_from(who.role, change.status)
        except ForbiddenChangeError as exc:
            return _error(403, str(exc))
        try:
            entry = await s.queue.set_status(
                violation_id,
                change.status,
                operator=who.name,
                ts_ms=int(time.time() * 1000),
                note=change.note,
                allowed_from=sources,
                expected_version=change.version,
            )
        except StatusConflictError as exc:
            s.metrics.conflicts.inc()
            return _conflict(exc.current, change.status)
        s.metrics.status_changes.labels(status=change.status.value).inc()
        return _json(entry.to_feed_dict())

    @app.get(
        "/api/counts",
        tags=["entries"],
        responses={200: {"model": CountsView}, **_errors(401, 429, 503)},
    )
    async def counts(_: Reader) -> Response:
        c = await s.queue.counts()
        return _json({"by_status": c.by_status, "by_type": c.by_type, "by_city": c.by_city})

    @app.get(
        "/api/series",
        tags=["entries"],
        responses={200: {"model": SeriesView}, **_errors(400, 401, 429, 503)},
    )
    async def series(
        _: Reader, minutes: Annotated[int, Query(ge=1, le=MAX_SERIES_MINUTES)] = 60
    ) -> Response:
        """Entries queued per minute by type, for the last ``minutes`` minutes."""
        now_ms = int(time.time() * 1000)
        since_ms = (now_ms // 60_000 - minutes + 1) * 60_000
        data = await s.queue.per_minute(since_ms=since_ms, until_ms=now_ms)
        return _json({"since_ms": since_ms, "minute_ms": 60_000, "series": data})

    @app.get(
        "/api/stream",
        tags=["entries"],
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
            **_errors(400, 401, 429, 503),
        },
    )
    async def stream(
        _: Reader,
        last_event_id: Annotated[
            str | None,
            Header(pattern=EventId, description="resume after this event id"),
        ] = None,
        after: Annotated[
            str | None,
            Query(
                pattern=r"^\d{1,15}-\d{1,19}$", description="as Last-Event-ID, for a first connect"
            ),
        ] = None,
    ) -> StreamingResponse:
        """`event: entry` for a new entry, `event: status` for a status change; `data:` the
        entry as `feed --json` prints it; `id:` resumes with nothing lost or repeated."""
        body = event_stream(
            queue=s.queue,
            feed=s.feed,
            last_event_id=last_event_id or after,
            heartbeat_s=s.config.stream.heartbeat_s,
        )
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/evidence/{path:path}",
        tags=["entries"],
        response_class=FileResponse,
        responses={200: {"content": {"image/jpeg": {}}}, **_errors(400, 401, 404, 429)},
    )
    async def evidence(_: Reader, path: Annotated[str, PathParam(max_length=512)]) -> Response:
        """An evidence file; only plain relative paths inside the evidence folder."""
        if not _EVIDENCE_PATH.match(path) or ".." in path.split("/"):
            return _error(400, "evidence path must be a plain relative path")
        root = s.evidence_dir.resolve()
        target = (root / path).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return _error(404, f"no evidence {path!r}")
        return FileResponse(target)


# The page's own script and style only: even if event text were ever put in as HTML, no
# inline script or handler (onerror=...) in it would run.
_CSP = (
    "default-src 'self'; img-src 'self' blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _static(name: str, media_type: str) -> Response:
    page = resources.files("services.control_center").joinpath(name).read_bytes()
    return Response(
        page,
        media_type=media_type,
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
    )


def _conflict(current: QueueEntry, wanted: EntryStatus) -> Response:
    return _json(
        {
            "error": f"cannot set {wanted.value}: the entry is {current.status.value} "
            f"(version {current.version})",
            "current": current.to_feed_dict(),
        },
        status=409,
    )
