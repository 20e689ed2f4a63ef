import asyncio
from pathlib import Path

from services.common.queue import EntryFilter, EntryNotFoundError, EntryStatus
from services.common.queue.archive import ArchivedQueue, SQLiteArchive
from services.common.queue.memory import InMemoryQueue
from services.control_center.retention import archive_closed
from tests.contract.queue import fields


def test_closed_entries_move_to_the_archive_and_stay_readable(tmp_path: Path) -> None:
    async def scenario() -> None:
        live = InMemoryQueue()
        for n in range(5):
            await live.append(fields(n), queue="wuzhen")
        await live.set_status(
            fields(1).violation_id, EntryStatus.FALSE_POSITIVE, operator="a", ts_ms=5
        )
        await live.set_status(
            fields(3).violation_id, EntryStatus.ACKNOWLEDGED, operator="a", ts_ms=5
        )
        await live.set_status(fields(3).violation_id, EntryStatus.RESOLVED, operator="b", ts_ms=6)
        await live.set_status(
            fields(4).violation_id, EntryStatus.RESOLVED, operator="b", ts_ms=10**13
        )
        archive = SQLiteArchive(tmp_path / "archive.sqlite")
        assert await archive_closed(live, archive, before_ms=1_000, batch=1) == 2
        for n in (1, 3):
            try:
                await live.get(fields(n).violation_id)
            except EntryNotFoundError:
                continue
            raise AssertionError(f"entry {n} is still live")
        both = ArchivedQueue(live, archive)
        assert [e.fields.frame for e in await both.read()] == [0, 1, 2, 3, 4]
        assert [
            (e.fields.frame, e.archived) for e in (await both.query(EntryFilter(), limit=3)).entries
        ] == [
            (4, False),
            (3, True),
            (2, False),
        ]
        closed = await both.query(EntryFilter(status=EntryStatus.RESOLVED))
        assert [e.fields.frame for e in closed.entries] == [4, 3]
        history = await both.history(fields(3).violation_id)
        assert [(h.from_status, h.status, h.operator) for h in history] == [
            (EntryStatus.NEW, EntryStatus.ACKNOWLEDGED, "a"),
            (EntryStatus.ACKNOWLEDGED, EntryStatus.RESOLVED, "b"),
        ]
        await both.close()

    asyncio.run(scenario())


def test_an_entry_reopened_before_eviction_stays_live(tmp_path: Path) -> None:
    async def scenario() -> None:
        live = InMemoryQueue()
        await live.append(fields(0), queue="wuzhen")
        vid = fields(0).violation_id
        await live.set_status(vid, EntryStatus.FALSE_POSITIVE, operator="a", ts_ms=5)
        stale = await live.get(vid)
        await live.set_status(vid, EntryStatus.NEW, operator="sup", ts_ms=6)
        assert not await live.evict(vid, version=stale.version)
        assert (await live.get(vid)).status is EntryStatus.NEW

    asyncio.run(scenario())
