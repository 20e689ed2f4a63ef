import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from services.common.queue.memory import InMemoryQueue
from services.control_center.http import create_app
from tests.contract.queue import fields

Scenario = Callable[[TestClient[object, object], InMemoryQueue], Awaitable[None]]


def serve(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        queue = InMemoryQueue()
        registry = CollectorRegistry()
        Counter("citybrain_dispatched", "entries written", registry=registry).inc(3)
        app = create_app(queue=queue, registry=registry, evidence_dir=tmp_path)
        async with TestClient(TestServer(app)) as client:
            await scenario(client, queue)

    asyncio.run(main())


def test_entries_are_listed_oldest_first(tmp_path: Path) -> None:
    async def scenario(client: TestClient[object, object], queue: InMemoryQueue) -> None:
        for n in range(3):
            await queue.append(fields(n), queue="wuzhen")
        body = await (await client.get("/api/entries")).json()
        assert [e["violation_id"] for e in body] == [fields(n)["violation_id"] for n in range(3)]
        assert body[0]["status"] == "new"
        after = await (await client.get(f"/api/entries?after={body[0]['entry_id']}")).json()
        assert len(after) == 2

    serve(tmp_path, scenario)


def test_status_change_and_history(tmp_path: Path) -> None:
    async def scenario(client: TestClient[object, object], queue: InMemoryQueue) -> None:
        await queue.append(fields(1), queue="wuzhen")
        vid = fields(1)["violation_id"]
        resp = await client.post(
            f"/api/entries/{vid}/status", json={"status": "acknowledged", "by": "li.wei"}
        )
        assert resp.status == 200
        assert (await resp.json())["status"] == "acknowledged"
        history = await (await client.get(f"/api/entries/{vid}/history")).json()
        assert [(h["status"], h["by"]) for h in history] == [("acknowledged", "li.wei")]

    serve(tmp_path, scenario)


def test_bad_requests_get_clear_answers(tmp_path: Path) -> None:
    async def scenario(client: TestClient[object, object], queue: InMemoryQueue) -> None:
        await queue.append(fields(1), queue="wuzhen")
        vid = fields(1)["violation_id"]
        bad = await client.post(f"/api/entries/{vid}/status", json={"status": "done"})
        assert bad.status == 400
        assert "one of new, acknowledged" in (await bad.json())["error"]
        missing = await client.post(
            "/api/entries/nope/status", json={"status": "resolved", "by": "x"}
        )
        assert missing.status == 404
        assert (await client.get("/api/entries?limit=x")).status == 400

    serve(tmp_path, scenario)


def test_follow_returns_new_entries(tmp_path: Path) -> None:
    async def scenario(client: TestClient[object, object], queue: InMemoryQueue) -> None:
        async def later() -> None:
            await asyncio.sleep(0.1)
            await queue.append(fields(5), queue="hangzhou")

        task = asyncio.create_task(later())
        body = await (await client.get("/api/follow?after=0-0&timeout_ms=3000")).json()
        await task
        assert [e["violation_id"] for e in body] == [fields(5)["violation_id"]]

    serve(tmp_path, scenario)


def test_metrics_dashboard_and_evidence(tmp_path: Path) -> None:
    (tmp_path / "cam").mkdir()
    (tmp_path / "cam" / "a.jpg").write_bytes(b"\xff\xd8jpeg")
    (tmp_path.parent / "secret.txt").write_text("no")

    async def scenario(client: TestClient[object, object], queue: InMemoryQueue) -> None:
        metrics = await (await client.get("/metrics")).text()
        assert "citybrain_dispatched_total 3.0" in metrics
        page = await (await client.get("/")).text()
        assert "citybrain control center" in page
        assert (await (await client.get("/evidence/cam/a.jpg")).read()) == b"\xff\xd8jpeg"
        assert (await client.get("/evidence/../secret.txt")).status == 404
        assert (await client.get("/evidence/cam/none.jpg")).status == 404

    serve(tmp_path, scenario)
