"""The archive: closed entries that retention moved out of Redis, in one SQLite file.

Why SQLite rather than daily JSONL or Parquet files: the API, ``history`` and ``feed`` look
archived entries up by violation id, page them newest first under the same filters as live
ones, and read them oldest first after an id. SQLite answers each of these from an index, in
one file, with the standard library, and commits each batch atomically, so retention can
write a batch and only then delete it from Redis. JSONL would need a scan per lookup;
Parquet is for analytics over columns, not for fetching one entry.

:class:`ArchivedQueue` puts the archive behind the queue's own interface: reads fall back
to it and merge it in order; writes go to the live queue only.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.common.queue import (
    AppendResult,
    Change,
    ControlCenterQueue,
    DispatchedEntry,
    EntryFilter,
    EntryNotFoundError,
    EntryPage,
    EntryStatus,
    PendingEntry,
    QueueEntry,
    StatusChange,
    TileCounts,
    entry_score,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    violation_id TEXT PRIMARY KEY,
    score INTEGER NOT NULL,
    queue TEXT NOT NULL,
    city TEXT NOT NULL,
    district TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    camera TEXT NOT NULL,
    entry_json TEXT NOT NULL,
    history_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_score ON entries (score);
CREATE INDEX IF NOT EXISTS entries_city_score ON entries (city, score);
CREATE INDEX IF NOT EXISTS entries_camera_score ON entries (camera, score);
"""
_FILTER_COLUMNS = ("city", "district", "type", "status", "priority", "camera")


class SQLiteArchive:
    """Archived entries with their full history; thread-safe, used from asyncio via threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())

    async def put_many(self, archived: Sequence[tuple[QueueEntry, list[StatusChange]]]) -> None:
        """Store entries with their history in one transaction; storing one again replaces it."""

        def write() -> None:
            rows = [
                (
                    e.violation_id,
                    e.score,
                    e.queue,
                    e.fields.city,
                    e.fields.district,
                    e.fields.type.value,
                    e.status.value,
                    e.fields.priority,
                    e.fields.camera_id,
                    e.model_dump_json(),
                    "[" + ",".join(h.model_dump_json() for h in history) + "]",
                )
                for e, history in archived
            ]
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
                )
                self._db.execute("COMMIT")

        await asyncio.to_thread(write)

    async def get(self, violation_id: str) -> QueueEntry | None:
        rows = await asyncio.to_thread(
            self._rows, "SELECT entry_json FROM entries WHERE violation_id = ?", (violation_id,)
        )
        return _entry(rows[0][0]) if rows else None

    async def history(self, violation_id: str) -> list[StatusChange] | None:
        rows = await asyncio.to_thread(
            self._rows, "SELECT history_json FROM entries WHERE violation_id = ?", (violation_id,)
        )
        if not rows:
            return None
        return [StatusChange.model_validate(h) for h in _json_list(rows[0][0])]

    async def query(
        self, where: EntryFilter, *, low: int, high: int, limit: int
    ) -> list[QueueEntry]:
        """Up to ``limit`` matching entries with ``low <= score <= high``, newest first."""
        clauses, params = ["score BETWEEN ? AND ?"], list[int | str]([low, high])
        for name, value in where.indexed().items():
            clauses.append(f"{name} = ?")
            params.append(value)
        sql = (
            f"SELECT entry_json FROM entries WHERE {' AND '.join(clauses)} "
            "ORDER BY score DESC LIMIT ?"
        )
        rows = await asyncio.to_thread(self._rows, sql, [*params, limit])
        return [_entry(r[0]) for r in rows]

    async def read(self, *, after: str, queues: list[str] | None, count: int) -> list[QueueEntry]:
        """Up to ``count`` entries after the entry id ``after``, oldest first."""
        sql = "SELECT entry_json FROM entries WHERE score > ?"
        params = list[int | str]([entry_score(after)])
        if queues is not None:
            sql += f" AND queue IN ({','.join('?' * len(queues))})"
            params += queues
        rows = await asyncio.to_thread(
            self._rows, sql + " ORDER BY score LIMIT ?", [*params, count]
        )
        return [_entry(r[0]) for r in rows]

    async def count(self) -> int:
        rows = await asyncio.to_thread(self._rows, "SELECT COUNT(*) FROM entries", ())
        return int(rows[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _json_list(text: str) -> list[Any]:
    value = json.loads(text)
    return value if isinstance(value, list) else []


def _entry(text: str) -> QueueEntry:
    return QueueEntry.model_validate_json(text).model_copy(update={"archived": True})


class ArchivedQueue:
    """A live queue with its archive behind it: one :class:`ControlCenterQueue` to read."""

    def __init__(self, live: ControlCenterQueue, archive: SQLiteArchive) -> None:
        self.live = live
        self.archive = archive

    async def append(self, fields: DispatchedEntry, *, queue: str) -> AppendResult:
        return await self.live.append(fields, queue=queue)

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        return await self.live.append_many(entries)

    async def record_repeat(
        self, violation_id: str, *, ts_ms: int, repeat_id: str | None = None
    ) -> int:
        return await self.live.record_repeat(violation_id, ts_ms=ts_ms, repeat_id=repeat_id)

    async def read(
        self, *, queues: list[str] | None = None, after: str = "0-0", count: int = 100
    ) -> list[QueueEntry]:
        live = await self.live.read(queues=queues, after=after, count=count)
        old = await self.archive.read(after=after, queues=queues, count=count)
        return _merge(live, old, newest_first=False)[:count]

    async def follow(
        self, *, after: str, block_ms: int, queues: list[str] | None = None
    ) -> list[QueueEntry]:
        found = await self.read(queues=queues, after=after)
        if found:
            return found
        return await self.live.follow(after=after, block_ms=block_ms, queues=queues)

    async def query(
        self, where: EntryFilter, *, before: int | None = None, limit: int = 50
    ) -> EntryPage:
        live = await self.live.query(where, before=before, limit=limit)
        low, high = where.score_range(before)
        # Where the live walk stopped early, archived entries below that point wait for
        # the next page, so that the two sources stay in one order.
        if live.next_cursor is not None:
            low = max(low, live.next_cursor)
        old = await self.archive.query(where, low=low, high=high, limit=limit)
        merged = _merge(live.entries, old, newest_first=True)
        if len(merged) >= limit:
            return EntryPage(entries=merged[:limit], next_cursor=merged[limit - 1].score)
        return EntryPage(entries=merged, next_cursor=live.next_cursor)

    async def get(self, violation_id: str) -> QueueEntry:
        try:
            return await self.live.get(violation_id)
        except EntryNotFoundError:
            found = await self.archive.get(violation_id)
            if found is None:
                raise
            return found

    async def set_status(
        self,
        violation_id: str,
        status: EntryStatus,
        *,
        operator: str,
        ts_ms: int,
        note: str = "",
        allowed_from: frozenset[EntryStatus] | None = None,
        expected_version: int | None = None,
    ) -> QueueEntry:
        return await self.live.set_status(
            violation_id,
            status,
            operator=operator,
            ts_ms=ts_ms,
            note=note,
            allowed_from=allowed_from,
            expected_version=expected_version,
        )

    async def history(self, violation_id: str) -> list[StatusChange]:
        try:
            return await self.live.history(violation_id)
        except EntryNotFoundError:
            found = await self.archive.history(violation_id)
            if found is None:
                raise
            return found

    async def counts(self) -> TileCounts:
        return await self.live.counts()

    async def per_minute(self, *, since_ms: int, until_ms: int) -> dict[str, list[int]]:
        return await self.live.per_minute(since_ms=since_ms, until_ms=until_ms)

    async def changes(self, *, after: str, block_ms: int, count: int = 500) -> list[Change]:
        return await self.live.changes(after=after, block_ms=block_ms, count=count)

    async def last_change_id(self) -> str:
        return await self.live.last_change_id()

    async def first_change_id(self) -> str:
        return await self.live.first_change_id()

    async def closed_before(self, ts_ms: int, *, limit: int) -> list[str]:
        return await self.live.closed_before(ts_ms, limit=limit)

    async def evict(self, violation_id: str, *, version: int) -> bool:
        return await self.live.evict(violation_id, version=version)

    async def queues(self) -> list[str]:
        return await self.live.queues()

    async def close(self) -> None:
        await self.live.close()
        self.archive.close()


def _merge(
    live: list[QueueEntry], old: list[QueueEntry], *, newest_first: bool
) -> list[QueueEntry]:
    """Both sources in one order; an entry in both (archived, then a crash before its
    eviction) is shown once, as it is live."""
    seen = {e.violation_id for e in live}
    merged = live + [e for e in old if e.violation_id not in seen]
    merged.sort(key=lambda e: e.score, reverse=newest_first)
    return merged
