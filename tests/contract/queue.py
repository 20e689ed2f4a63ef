import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from services.common.queue import (
    ControlCenterQueue,
    DispatchedEntry,
    EntryFilter,
    EntryNotFoundError,
    EntryStatus,
    PendingEntry,
    StatusConflictError,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def fields(n: int, **extra: object) -> DispatchedEntry:
    """A dispatched entry; ``extra`` overrides fields or adds unknown ones."""
    return DispatchedEntry.model_validate(
        {
            "violation_id": f"wuzhen-cam-01:red_light:{n:06d}:1700000000000",
            "type": "red_light",
            "camera_id": "wuzhen-cam-01",
            "city": "wuzhen",
            "frame": n,
            "ts_ms": 1_700_000_000_000 + n,
            "track_id": n,
            "bbox_xywh": [1, 2, 3, 4],
            "confidence": 0.9,
            "district": "town",
            "priority": "normal",
            "dispatched_ts_ms": 1_700_000_000_500 + n,
            **extra,
        },
        strict=False,
    )


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
            assert [e.violation_id for e in await q.read()] == [
                fields(n).violation_id for n in (1, 2, 3)
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
            vid = fields(7).violation_id
            await q.set_status(vid, EntryStatus.ACKNOWLEDGED, operator="li.wei", ts_ms=10)
            entry = await q.set_status(
                vid, EntryStatus.RESOLVED, operator="zhang.min", ts_ms=20, note="ticket issued"
            )
            assert (entry.status, entry.status_by, entry.status_ts_ms) == (
                EntryStatus.RESOLVED,
                "zhang.min",
                20,
            )
            history = await q.history(vid)
            assert [(h.status, h.from_status, h.operator, h.ts_ms, h.version) for h in history] == [
                (EntryStatus.ACKNOWLEDGED, EntryStatus.NEW, "li.wei", 10, 1),
                (EntryStatus.RESOLVED, EntryStatus.ACKNOWLEDGED, "zhang.min", 20, 2),
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
            vid = fields(3).violation_id
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
                await q.set_status("nope", EntryStatus.RESOLVED, operator="x", ts_ms=1)
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
                fields(n).violation_id for n in (0, 1, 2, 9)
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
            vid = fields(4).violation_id
            assert await q.record_repeat(vid, ts_ms=5, repeat_id="r1") == 1
            assert await q.record_repeat(vid, ts_ms=6, repeat_id="r1") == 1
            assert await q.record_repeat(vid, ts_ms=7, repeat_id="r2") == 2
            assert (await q.get(vid)).last_repeat_ts_ms == 7
            await q.close()

        run(scenario())

    def test_status_change_is_compare_and_set(self) -> None:
        async def scenario() -> None:
            q = self.open()
            await q.append(fields(1), queue="wuzhen")
            vid = fields(1).violation_id
            new = frozenset({EntryStatus.NEW})
            won = await q.set_status(
                vid, EntryStatus.ACKNOWLEDGED, operator="a", ts_ms=1, allowed_from=new
            )
            assert won.version == 1
            with pytest.raises(StatusConflictError) as lost:
                await q.set_status(
                    vid, EntryStatus.FALSE_POSITIVE, operator="b", ts_ms=2, allowed_from=new
                )
            assert (lost.value.current.status, lost.value.current.version) == (
                EntryStatus.ACKNOWLEDGED,
                1,
            )
            with pytest.raises(StatusConflictError):
                await q.set_status(
                    vid, EntryStatus.RESOLVED, operator="b", ts_ms=2, expected_version=0
                )
            assert [h.operator for h in await q.history(vid)] == ["a"]
            await q.close()

        run(scenario())

    def test_concurrent_changes_exactly_one_wins(self) -> None:
        async def scenario() -> None:
            q = self.open()
            await q.append(fields(1), queue="wuzhen")
            vid = fields(1).violation_id
            handles = [self.open() for _ in range(8)]

            async def attempt(n: int, handle: ControlCenterQueue) -> bool:
                try:
                    await handle.set_status(
                        vid,
                        EntryStatus.ACKNOWLEDGED,
                        operator=f"op{n}",
                        ts_ms=n,
                        allowed_from=frozenset({EntryStatus.NEW}),
                        expected_version=0,
                    )
                except StatusConflictError:
                    return False
                return True

            outcomes = await asyncio.gather(*(attempt(n, h) for n, h in enumerate(handles)))
            assert sum(outcomes) == 1
            assert len(await q.history(vid)) == 1
            for handle in handles:
                if handle is not q:
                    await handle.close()
            await q.close()

        run(scenario())

    def test_query_filters_and_pages_newest_first(self) -> None:
        async def scenario() -> None:
            q = self.open()
            for n in range(30):
                city = "hangzhou" if n % 3 == 0 else "wuzhen"
                kind = "illegal_parking" if n % 2 else "red_light"
                await q.append(fields(n, city=city, type=kind), queue=city)
            everything = await q.query(EntryFilter(), limit=100)
            assert [e.fields.frame for e in everything.entries] == list(range(29, -1, -1))
            assert everything.next_cursor is None
            where = EntryFilter(city="hangzhou", type="red_light")
            first = await q.query(where, limit=2)
            assert [e.fields.frame for e in first.entries] == [24, 18]
            assert first.next_cursor is not None
            rest = await q.query(where, before=first.next_cursor, limit=10)
            assert [e.fields.frame for e in rest.entries] == [12, 6, 0]
            await q.set_status(
                fields(12).violation_id, EntryStatus.ACKNOWLEDGED, operator="a", ts_ms=1
            )
            acked = await q.query(EntryFilter(status=EntryStatus.ACKNOWLEDGED))
            assert [e.fields.frame for e in acked.entries] == [12]
            new = await q.query(EntryFilter(status=EntryStatus.NEW, city="hangzhou"))
            assert [e.fields.frame for e in new.entries] == [27, 24, 21, 18, 15, 9, 6, 3, 0]
            nothing = await q.query(EntryFilter(camera_id="nowhere"))
            assert (nothing.entries, nothing.next_cursor) == ([], None)
            middle = everything.entries[10].score // 1000
            timed = await q.query(EntryFilter(until_ms=middle, since_ms=middle))
            assert everything.entries[10].violation_id in [e.violation_id for e in timed.entries]
            await q.close()

        run(scenario())

    def test_counts_and_per_minute_series(self) -> None:
        async def scenario() -> None:
            q = self.open()
            for n in range(4):
                kind = "illegal_parking" if n == 3 else "red_light"
                await q.append(fields(n, type=kind), queue="wuzhen")
            await q.set_status(fields(0).violation_id, EntryStatus.RESOLVED, operator="a", ts_ms=1)
            counts = await q.counts()
            assert counts.by_status == {"new": 3, "resolved": 1}
            assert counts.by_type == {"red_light": 3, "illegal_parking": 1}
            assert counts.by_city == {"wuzhen": 4}
            now_ms = int(time.time() * 1000)
            series = await q.per_minute(since_ms=now_ms - 120_000, until_ms=now_ms + 60_000)
            assert sum(series["red_light"]) == 3
            assert sum(series["illegal_parking"]) == 1
            assert len(series["red_light"]) in (4, 5)
            await q.close()

        run(scenario())

    def test_change_log_resumes_after_an_id(self) -> None:
        async def scenario() -> None:
            q = self.open()
            start = await q.last_change_id()
            await q.append(fields(1), queue="wuzhen")
            vid = fields(1).violation_id
            await q.set_status(vid, EntryStatus.ACKNOWLEDGED, operator="a", ts_ms=5)
            await q.append(fields(2), queue="wuzhen")
            log = await q.changes(after=start, block_ms=0)
            assert [(c.kind.value, c.entry.violation_id, c.entry.status.value) for c in log] == [
                ("entry", vid, "new"),
                ("status", vid, "acknowledged"),
                ("entry", fields(2).violation_id, "new"),
            ]
            assert log[1].entry.status_by == "a"
            rest = await q.changes(after=log[0].change_id, block_ms=0)
            assert [c.change_id for c in rest] == [c.change_id for c in log[1:]]
            assert await q.changes(after=log[-1].change_id, block_ms=50) == []
            assert await q.last_change_id() == log[-1].change_id
            await q.close()

        run(scenario())

    def test_closed_entries_can_be_evicted_at_their_version(self) -> None:
        async def scenario() -> None:
            q = self.open()
            for n in range(3):
                await q.append(fields(n), queue="wuzhen")
            for n, ts in ((0, 100), (1, 50)):
                await q.set_status(
                    fields(n).violation_id, EntryStatus.RESOLVED, operator="a", ts_ms=ts
                )
            assert await q.closed_before(200, limit=10) == [
                fields(1).violation_id,
                fields(0).violation_id,
            ]
            assert await q.closed_before(60, limit=10) == [fields(1).violation_id]
            assert not await q.evict(fields(1).violation_id, version=0)
            assert await q.evict(fields(1).violation_id, version=1)
            with pytest.raises(EntryNotFoundError):
                await q.get(fields(1).violation_id)
            left = await q.query(EntryFilter())
            assert [e.fields.frame for e in left.entries] == [2, 0]
            assert [e.fields.frame for e in await q.read()] == [0, 2]
            assert await q.closed_before(200, limit=10) == [fields(0).violation_id]
            await q.close()

        run(scenario())
