import asyncio
import dataclasses
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from services.common.queue import (
    ControlCenterQueue,
    EntryNotFoundError,
    EntryStatus,
    PendingEntry,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def fields(n: int, **extra: object) -> dict[str, object]:
    return {
        "violation_id": f"wuzhen-cam-01:red_light:{n:06d}:1700000000000",
        "type": "red_light",
        "camera_id": "wuzhen-cam-01",
        "district": "town",
        "dispatched_ts_ms": 1_700_000_000_500 + n,
        **extra,
    }


class QueueContract:
    """Subclasses provide a ``queue_url`` fixture and an ``open`` method."""

    def open(self) -> ControlCenterQueue:
        raise NotImplementedError

    def test_append_then_read_oldest_first(self) -> None:
        async def scenario() -> None:
            q = self.open()
            for n in range(5):
                assert (await q.append(fields(n), queue="wuzhen")).created
            entries = await q.read()
            assert [e.fields for e in entries] == [fields(n) for n in range(5)]
            assert all(e.status is EntryStatus.NEW for e in entries)
            assert (await q.read(after=entries[2].entry_id))[0].fields == fields(3)
            assert len(await q.read(count=2)) == 2
            await q.close()

        run(scenario())

    def test_append_is_idempotent_on_violation_id(self) -> None:
        async def scenario() -> None:
            q = self.open()
            first = await q.append(fields(1), queue="wuzhen")
            again = await q.append(fields(1, extra="ignored"), queue="wuzhen")
            assert again == dataclasses.replace(first, created=False)
            assert len(await q.read()) == 1
            await q.close()

        run(scenario())

    def test_read_merges_queues_in_append_order(self) -> None:
        async def scenario() -> None:
            q = self.open()
            await q.append(fields(1), queue="wuzhen")
            await q.append(fields(2), queue="hangzhou")
            await q.append(fields(3), queue="wuzhen")
            assert await q.queues() == ["hangzhou", "wuzhen"]
            assert [e.fields["violation_id"] for e in await q.read()] == [
                fields(n)["violation_id"] for n in (1, 2, 3)
            ]
            only = await q.read(queues=["hangzhou"])
            assert [e.queue for e in only] == ["hangzhou"]
            await q.close()

        run(scenario())

    def test_follow_wakes_on_new_entry(self) -> None:
        async def scenario() -> None:
            q = self.open()
            writer = self.open()
            await q.append(fields(0), queue="wuzhen")
            last = (await q.read())[-1].entry_id
            assert await q.follow(after=last, block_ms=100) == []

            async def later() -> None:
                await asyncio.sleep(0.2)
                await writer.append(fields(1), queue="wuzhen")

            task = asyncio.create_task(later())
            got = await q.follow(after=last, block_ms=5000)
            await task
            assert [e.fields for e in got] == [fields(1)]
            await q.close()
            await writer.close()

        run(scenario())

    def test_status_change_is_kept_with_history(self) -> None:
        async def scenario() -> None:
            q = self.open()
            await q.append(fields(7), queue="wuzhen")
            vid = str(fields(7)["violation_id"])
            await q.set_status(vid, EntryStatus.ACKNOWLEDGED, by="li.wei", ts_ms=10)
            entry = await q.set_status(
                vid, EntryStatus.RESOLVED, by="zhang.min", ts_ms=20, note="ticket issued"
            )
            assert (entry.status, entry.status_by, entry.status_ts_ms) == (
                EntryStatus.RESOLVED,
                "zhang.min",
                20,
            )
            history = await q.history(vid)
            assert [(h.status, h.by, h.ts_ms) for h in history] == [
                (EntryStatus.ACKNOWLEDGED, "li.wei", 10),
                (EntryStatus.RESOLVED, "zhang.min", 20),
            ]
            assert history[1].note == "ticket issued"
            # The entry never leaves the queue, whatever its status.
            (listed,) = await q.read()
            assert listed.status is EntryStatus.RESOLVED
            assert listed.to_feed_dict()["status"] == "resolved"
            await q.close()

        run(scenario())

    def test_repeats_are_counted_on_the_entry(self) -> None:
        async def scenario() -> None:
            q = self.open()
            await q.append(fields(3), queue="wuzhen")
            vid = str(fields(3)["violation_id"])
            assert await q.record_repeat(vid, ts_ms=5) == 1
            assert await q.record_repeat(vid, ts_ms=9) == 2
            entry = await q.get(vid)
            assert (entry.repeat_count, entry.last_repeat_ts_ms) == (2, 9)
            await q.close()

        run(scenario())

    def test_unknown_entry_raises(self) -> None:
        async def scenario() -> None:
            q = self.open()
            with pytest.raises(EntryNotFoundError):
                await q.get("nope")
            with pytest.raises(EntryNotFoundError):
                await q.set_status("nope", EntryStatus.RESOLVED, by="x", ts_ms=1)
            with pytest.raises(EntryNotFoundError):
                await q.record_repeat("nope", ts_ms=1)
            await q.close()

        run(scenario())

    def test_append_many_is_ordered_and_idempotent(self) -> None:
        async def scenario() -> None:
            q = self.open()
            first = [PendingEntry(fields=fields(n), queue="wuzhen") for n in range(3)]
            results = await q.append_many(first)
            assert [r.created for r in results] == [True, True, True]
            again = await q.append_many([*first, PendingEntry(fields=fields(9), queue="x")])
            assert [r.created for r in again] == [False, False, False, True]
            assert [r.entry_id for r in again[:3]] == [r.entry_id for r in results]
            assert [e.violation_id for e in await q.read()] == [
                str(fields(n)["violation_id"]) for n in (0, 1, 2, 9)
            ]
            twice = [PendingEntry(fields=fields(7), queue="wuzhen")] * 2
            created, repeated = await q.append_many(twice)
            assert (created.created, repeated.created) == (True, False)
            assert repeated.entry_id == created.entry_id
            await q.close()

        run(scenario())

    def test_repeat_with_an_id_is_counted_once(self) -> None:
        async def scenario() -> None:
            q = self.open()
            await q.append(fields(4), queue="wuzhen")
            vid = str(fields(4)["violation_id"])
            assert await q.record_repeat(vid, ts_ms=5, repeat_id="r1") == 1
            assert await q.record_repeat(vid, ts_ms=6, repeat_id="r1") == 1
            assert await q.record_repeat(vid, ts_ms=7, repeat_id="r2") == 2
            assert (await q.get(vid)).last_repeat_ts_ms == 7
            await q.close()

        run(scenario())
