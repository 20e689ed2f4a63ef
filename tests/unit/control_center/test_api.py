"""The control-center API over the in-memory queue, served by uvicorn, called over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from services.common.queue import EntryStatus
from services.common.queue.memory import InMemoryQueue
from services.control_center.api import create_app
from services.control_center.config import AuthSettings, ControlCenterConfig
from services.control_center.operators import OperatorStore, add_operator
from services.control_center.server import AppServer
from services.control_center.workflow import Role
from tests.contract.queue import fields

VID = fields(1).violation_id


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Api:
    http: aiohttp.ClientSession
    base: str
    queue: InMemoryQueue
    tokens: dict[str, str]
    operators: Path

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def call(self, method: str, path: str, *, name: str | None = None, **kw: Any) -> Answer:
        """One request, its body read (JSON when it is JSON) and the connection released."""
        headers = {**(self.auth(name) if name else {}), **kw.pop("headers", {})}
        async with self.http.request(method, self.base + path, headers=headers, **kw) as resp:
            raw = await resp.read()
            is_json = resp.content_type == "application/json"
            body = json.loads(raw) if is_json else raw.decode(errors="replace")
            return Answer(resp.status, dict(resp.headers), body)

    async def get(self, path: str, name: str | None = "viewer", **headers: str) -> Answer:
        return await self.call("GET", path, name=name, headers=headers)

    async def post_status(self, name: str, body: Any, vid: str = VID, **headers: str) -> Answer:
        return await self.call(
            "POST",
            f"/api/entries/{vid}/status",
            name=name,
            data=json.dumps(body),
            headers={"Content-Type": "application/json", **headers},
        )


@asynccontextmanager
async def served(tmp_path: Path, *, max_failures: int = 10) -> AsyncIterator[Api]:
    operators = tmp_path / "ops.yaml"
    tokens = {
        name: add_operator(operators, name, role)
        for name, role in (
            ("viewer", Role.VIEWER),
            ("li.wei", Role.OPERATOR),
            ("zhang.min", Role.SUPERVISOR),
        )
    }
    (tmp_path / "evidence" / "cam").mkdir(parents=True)
    (tmp_path / "evidence" / "cam" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path / "secret.txt").write_text("no")
    queue = InMemoryQueue()
    for n in range(3):
        await queue.append(fields(n), queue="wuzhen")
    config = ControlCenterConfig(auth=AuthSettings(max_failures=max_failures))
    app = create_app(
        queue=queue,
        operators=OperatorStore(operators),
        registry=CollectorRegistry(),
        evidence_dir=tmp_path / "evidence",
        config=config,
    )
    server = AppServer(app, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(http, f"http://127.0.0.1:{server.port}", queue, tokens, operators)
    finally:
        await server.stop()


def scenario(tmp_path: Path, body: Callable[[Api], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with served(tmp_path, **kw) as api:
            await body(api)

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_reads_need_a_token_unless_open(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        bare = await api.get("/api/entries", name=None)
        assert bare.status == 401
        assert "Bearer" in bare.body["error"]
        assert bare.headers["WWW-Authenticate"] == "Bearer"
        wrong = await api.get("/api/entries", name=None, Authorization="Bearer nope")
        assert wrong.status == 401
        page = (await api.get("/api/entries")).body
        assert [e["violation_id"] for e in page["entries"]] == [
            fields(n).violation_id for n in (2, 1, 0)
        ]
        assert page["next_cursor"] is None
        text = api.operators.read_text()
        api.operators.write_text(text.replace("open_reads: false", "open_reads: true"))
        assert (await api.get("/api/entries", name=None)).status == 200
        anonymous = await api.call(
            "POST",
            f"/api/entries/{VID}/status",
            json={"status": "acknowledged"},
        )
        assert anonymous.status == 401

    scenario(tmp_path, body)


def test_the_workflow_is_enforced_and_the_owner_recorded(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        assert (await api.post_status("viewer", {"status": "acknowledged"})).status == 403
        assert (await api.post_status("li.wei", {"status": "new"})).status == 403
        resolve_new = await api.post_status("li.wei", {"status": "resolved"})
        assert resolve_new.status == 409
        assert resolve_new.body["current"]["status"] == "new"
        named = await api.post_status("li.wei", {"status": "acknowledged", "by": "someone"})
        assert named.status == 400
        acked = await api.post_status(
            "li.wei", {"status": "acknowledged", "note": "on it", "version": 0}
        )
        assert acked.status == 200
        assert acked.body["status_by"] == "li.wei"
        stale = await api.post_status("zhang.min", {"status": "false_positive", "version": 0})
        assert stale.status == 409
        current = stale.body["current"]
        assert (current["status"], current["version"]) == ("acknowledged", 1)
        assert (await api.post_status("li.wei", {"status": "resolved"})).status == 200
        assert (await api.post_status("li.wei", {"status": "acknowledged"})).status == 409
        assert (await api.post_status("zhang.min", {"status": "new"})).status == 200
        history = (await api.get(f"/api/entries/{VID}/history")).body
        assert [(h["operator"], h["from_status"], h["status"]) for h in history] == [
            ("li.wei", "new", "acknowledged"),
            ("li.wei", "acknowledged", "resolved"),
            ("zhang.min", "resolved", "new"),
        ]
        assert history[0]["note"] == "on it"

    scenario(tmp_path, body)


def test_concurrent_operators_on_one_version_exactly_one_wins(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        attempts = [
            ("li.wei", "acknowledged"),
            ("zhang.min", "false_positive"),
            ("li.wei", "false_positive"),
            ("zhang.min", "acknowledged"),
        ]
        answers = await asyncio.gather(
            *(api.post_status(n, {"status": s, "version": 0}) for n, s in attempts)
        )
        assert sorted(a.status for a in answers) == [200, 409, 409, 409]
        assert len(await api.queue.history(VID)) == 1

    scenario(tmp_path, body)


def test_writes_must_be_same_origin_small_json(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        plain = await api.call(
            "POST",
            f"/api/entries/{VID}/status",
            name="li.wei",
            data='{"status": "acknowledged"}',
            headers={"Content-Type": "text/plain"},
        )
        assert plain.status == 415
        foreign = await api.post_status(
            "li.wei", {"status": "acknowledged"}, Origin="http://evil.example"
        )
        assert foreign.status == 403
        same = await api.post_status("li.wei", {"status": "acknowledged"}, Origin=api.base)
        assert same.status == 200
        long_note = await api.post_status("li.wei", {"status": "resolved", "note": "x" * 1001})
        assert long_note.status == 400
        assert "note" in long_note.body["error"]
        huge = await api.post_status("li.wei", {"status": "resolved", "note": "x" * 20_000})
        assert huge.status == 413
        assert (await api.queue.get(VID)).status is EntryStatus.ACKNOWLEDGED

    scenario(tmp_path, body)


def test_failed_sign_ins_are_limited_per_client(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        bad = "Bearer cb_0123456789abcdef_" + "x" * 43
        for _ in range(3):
            assert (await api.get("/api/entries", name=None, Authorization=bad)).status == 401
        limited = await api.get("/api/entries")
        assert limited.status == 429
        assert int(limited.headers["Retry-After"]) > 0

    scenario(tmp_path, body, max_failures=3)


def test_bad_queries_get_a_4xx_with_a_message(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        for query in (
            "/api/entries?cursor=garbage",
            "/api/entries?limit=0",
            "/api/entries?limit=-1",
            "/api/entries?limit=100000",
            "/api/entries?status=done",
            "/api/entries?city=%00",
            "/api/series?minutes=0",
            "/evidence/x/%00",
            "/evidence/cam/..%2F..%2Fsecret.txt",
            "/evidence/cam/none.jpg",
            "/api/entries/nope",
            "/api/stream?after=x",
        ):
            answer = await api.get(query)
            assert 400 <= answer.status < 500, query
            assert answer.body["error"], query
        assert (await api.get("/evidence/cam/a.jpg")).body == "\ufffd\ufffdjpeg"

    scenario(tmp_path, body)


def test_filters_counts_series_metrics_and_openapi(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        await api.queue.append(fields(7, city="hangzhou", type="illegal_parking"), queue="hz")
        page = (await api.get("/api/entries?city=hangzhou")).body
        assert [e["violation_id"] for e in page["entries"]] == [fields(7).violation_id]
        first = (await api.get("/api/entries?limit=2")).body
        rest = (await api.get(f"/api/entries?limit=2&cursor={first['next_cursor']}")).body
        assert len(first["entries"]) + len(rest["entries"]) == 4
        counts = (await api.get("/api/counts")).body
        assert counts["by_city"] == {"wuzhen": 3, "hangzhou": 1}
        series = (await api.get("/api/series?minutes=5")).body
        assert sum(series["series"]["red_light"]) == 3
        assert len(series["series"]["red_light"]) == 5
        assert "citybrain_control_center_requests_total" in (await api.get("/metrics")).body
        spec = (await api.get("/api/openapi.json")).body
        assert "/api/entries/{violation_id}/status" in spec["paths"]
        assert "StatusRequest" in spec["components"]["schemas"]
        assert "citybrain control center" in (await api.get("/", name=None)).body

    scenario(tmp_path, body)


async def read_events(resp: aiohttp.ClientResponse, n: int) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    while len(events) < n:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if not line:
            if "data" in current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = value
    return events


def test_stream_resumes_with_nothing_lost_or_repeated(tmp_path: Path) -> None:
    async def body(api: Api) -> None:
        url = f"{api.base}/api/stream"
        async with api.http.get(f"{url}?after=0-0", headers=api.auth("viewer")) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            first = await read_events(resp, 3)
        assert [e["event"] for e in first] == ["entry"] * 3
        assert json.loads(first[2]["data"])["violation_id"] == fields(2).violation_id
        # While no one listens: a status change and a new entry.
        assert (await api.post_status("li.wei", {"status": "acknowledged"})).status == 200
        await api.queue.append(fields(5), queue="wuzhen")
        resume = {**api.auth("viewer"), "Last-Event-ID": first[2]["id"]}
        async with api.http.get(url, headers=resume) as resp:
            missed = await read_events(resp, 2)
            await api.queue.append(fields(6), queue="wuzhen")
            live = await read_events(resp, 1)
        assert [(e["event"], json.loads(e["data"])["violation_id"]) for e in missed + live] == [
            ("status", VID),
            ("entry", fields(5).violation_id),
            ("entry", fields(6).violation_id),
        ]
        assert json.loads(missed[0]["data"])["status_by"] == "li.wei"

    scenario(tmp_path, body)
