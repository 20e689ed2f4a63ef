"""The control center on the real Redis: the service as a process, CAS races through the
API, paging under rare filters, and retention into the archive."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from services.common.queue import (
    EntryFilter,
    EntryStatus,
    PendingEntry,
    StatusConflictError,
    open_queue,
)
from services.common.queue.archive import ArchivedQueue, SQLiteArchive
from services.control_center.operators import add_operator
from services.control_center.retention import archive_closed
from services.control_center.workflow import Role
from tests.contract.queue import fields
from tests.ports import free_port


def call(url: str, *, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_service_serves_redis_alone(redis_url: str, unique_name: str, tmp_path: Path) -> None:
    operators = tmp_path / "ops.yaml"
    tokens = {
        name: add_operator(operators, name, role)
        for name, role in (("li.wei", Role.OPERATOR), ("v", Role.VIEWER))
    }

    async def seed() -> None:
        queue = open_queue(redis_url, prefix=unique_name)
        await queue.append_many([PendingEntry(fields(n), queue="wuzhen") for n in range(3)])
        await queue.close()

    asyncio.run(seed())
    port = free_port()
    config = tmp_path / "cc.yaml"
    config.write_text(f"retention:\n  archive: {tmp_path / 'archive.sqlite'}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services",
            "control-center",
            "--queue",
            redis_url,
            "--queue-prefix",
            unique_name,
            "--port",
            str(port),
            "--operators",
            str(operators),
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "control center did not start"
                time.sleep(0.3)
        status, page = call(f"{base}/api/entries", token=tokens["v"])
        assert status == 200
        assert len(page["entries"]) == 3
        vid = fields(1).violation_id
        # ack through the CLI, as the operator whose token is in CITYBRAIN_TOKEN.
        env = {**os.environ, "CITYBRAIN_TOKEN": tokens["li.wei"]}
        ack = subprocess.run(
            [sys.executable, "-m", "services", "ack", vid, "--note", "on it", "--url", base],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ack.returncode == 0, ack.stdout + ack.stderr
        again = subprocess.run(
            [sys.executable, "-m", "services", "ack", vid, "--url", base],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 2
        assert "409" in again.stderr
        viewer = call(
            f"{base}/api/entries/{vid}/status", token=tokens["v"], body={"status": "resolved"}
        )
        assert viewer[0] == 403
        status, history = call(f"{base}/api/entries/{vid}/history", token=tokens["v"])
        assert [(h["operator"], h["status"], h["note"]) for h in history] == [
            ("li.wei", "acknowledged", "on it")
        ]
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output


def test_racing_operators_on_redis_exactly_one_wins(redis_url: str, unique_name: str) -> None:
    async def scenario() -> None:
        queue = open_queue(redis_url, prefix=unique_name)
        await queue.append(fields(1), queue="wuzhen")
        vid = fields(1).violation_id
        # Separate handles: separate connections, as two control-center replicas would have.
        handles = [open_queue(redis_url, prefix=unique_name) for _ in range(20)]

        async def try_it(n: int) -> str:
            target = EntryStatus.ACKNOWLEDGED if n % 2 else EntryStatus.FALSE_POSITIVE
            try:
                await handles[n].set_status(
                    vid,
                    target,
                    operator=f"op{n}",
                    ts_ms=n,
                    allowed_from=frozenset({EntryStatus.NEW}),
                    expected_version=0,
                )
            except StatusConflictError:
                return "lost"
            return "won"

        outcomes = await asyncio.gather(*(try_it(n) for n in range(20)))
        assert sorted(outcomes) == ["lost"] * 19 + ["won"]
        assert len(await queue.history(vid)) == 1
        for handle in handles:
            await handle.close()
        await queue.close()

    asyncio.run(scenario())


def test_a_rare_filter_pages_through_everything(redis_url: str, unique_name: str) -> None:
    async def scenario() -> None:
        queue = open_queue(redis_url, prefix=unique_name)
        rare = {3, 4_000, 11_000}
        batch: list[PendingEntry] = []
        for n in range(12_000):
            city, kind = ("wuzhen", "red_light") if n % 2 else ("hangzhou", "illegal_parking")
            if n in rare:
                city, kind = "wuzhen", "illegal_parking"
            batch.append(PendingEntry(fields(n, city=city, type=kind), queue=city))
            if len(batch) == 500:
                await queue.append_many(batch)
                batch = []
        where = EntryFilter(city="wuzhen", type="illegal_parking")
        found: list[int] = []
        cursor: int | None = None
        for _ in range(20):
            page = await queue.query(where, before=cursor, limit=10)
            found += [e.fields.frame for e in page.entries]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert found == sorted(rare, reverse=True)
        await queue.close()

    asyncio.run(scenario())


def test_retention_moves_closed_entries_to_the_archive(
    redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        live = open_queue(redis_url, prefix=unique_name)
        for n in range(6):
            await live.append(fields(n), queue="wuzhen")
        for n in (0, 1, 2):
            vid = fields(n).violation_id
            await live.set_status(vid, EntryStatus.ACKNOWLEDGED, operator="a", ts_ms=10)
            await live.set_status(vid, EntryStatus.RESOLVED, operator="b", ts_ms=20, note="done")
        # Closed recently (ts 10**13 is the future): stays live.
        await live.set_status(
            fields(3).violation_id, EntryStatus.FALSE_POSITIVE, operator="a", ts_ms=10**13
        )
        client = redis.Redis.from_url(redis_url)
        keys_before = len(client.keys(f"{unique_name}:*"))
        archive = SQLiteArchive(tmp_path / "archive.sqlite")
        moved = await archive_closed(live, archive, before_ms=1_000, batch=2)
        assert moved == 3
        assert await archive_closed(live, archive, before_ms=1_000, batch=2) == 0
        # Their hashes and histories left Redis (and the resolved index, now empty); the
        # stream records and index members too.
        assert not client.exists(f"{unique_name}:e:{fields(0).violation_id}")
        assert len(client.keys(f"{unique_name}:*")) == keys_before - 7
        assert client.xlen(f"{unique_name}:q:wuzhen") == 3
        client.close()
        # Reads still find them, in order, marked archived.
        both = ArchivedQueue(live, archive)
        entry = await both.get(fields(1).violation_id)
        assert (entry.archived, entry.status) == (True, EntryStatus.RESOLVED)
        history = await both.history(fields(1).violation_id)
        assert [(h.operator, h.note) for h in history] == [("a", ""), ("b", "done")]
        assert [e.fields.frame for e in await both.read()] == [0, 1, 2, 3, 4, 5]
        assert [e.fields.frame for e in await both.read(after=(await both.read())[1].entry_id)] == [
            2,
            3,
            4,
            5,
        ]
        first = await both.query(EntryFilter(), limit=4)
        rest = await both.query(EntryFilter(), before=first.next_cursor, limit=4)
        assert [e.fields.frame for e in first.entries + rest.entries] == [5, 4, 3, 2, 1, 0]
        resolved = await both.query(EntryFilter(status=EntryStatus.RESOLVED))
        assert [e.fields.frame for e in resolved.entries] == [2, 1, 0]
        await both.close()

    asyncio.run(scenario())
