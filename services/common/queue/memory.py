"""An in-process control-center queue with the Redis one's ordering and idempotency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.queue import (
    AppendResult,
    EntryNotFoundError,
    EntryStatus,
    PendingEntry,
    QueueEntry,
    StatusChange,
    stream_id_key,
)


@dataclass
class _Stored:
    entry_id: str
    queue: str
    fields: dict[str, Any]
    status: EntryStatus = EntryStatus.NEW
    status_by: str | None = None
    status_ts_ms: int | None = None
    repeat_count: int = 0
    last_repeat_ts_ms: int | None = None
    repeat_ids: set[str] = field(default_factory=set)

    def view(self) -> QueueEntry:
        return QueueEntry(
            entry_id=self.entry_id,
            queue=self.queue,
            fields=dict(self.fields),
            status=self.status,
            status_by=self.status_by,
            status_ts_ms=self.status_ts_ms,
            repeat_count=self.repeat_count,
            last_repeat_ts_ms=self.last_repeat_ts_ms,
        )


class InMemoryQueue:
    """Entries live in one list in append order; ids look like Redis stream ids."""

    def __init__(self) -> None:
        self._entries: list[_Stored] = []
        self._by_violation: dict[str, _Stored] = {}
        self._history: dict[str, list[StatusChange]] = {}
        self._last_id = (0, 0)
        self._changed = asyncio.Event()

    def _next_id(self) -> str:
        ms = int(time.time() * 1000)
        last_ms, last_seq = self._last_id
        self._last_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return f"{self._last_id[0]}-{self._last_id[1]}"

    async def append(self, fields: Mapping[str, Any], *, queue: str) -> AppendResult:
        violation_id = str(fields["violation_id"])
        existing = self._by_violation.get(violation_id)
        if existing is not None:
            return AppendResult(entry_id=existing.entry_id, created=False)
        stored = _Stored(entry_id=self._next_id(), queue=queue, fields=dict(fields))
        self._entries.append(stored)
        self._by_violation[violation_id] = stored
        self._changed.set()
        return AppendResult(entry_id=stored.entry_id, created=True)

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        return [await self.append(e.fields, queue=e.queue) for e in entries]

    async def read(
        self, *, queues: list[str] | None = None, after: str = "0-0", count: int = 100
    ) -> list[QueueEntry]:
        floor = stream_id_key(after)
        out = [
            s.view()
            for s in self._entries
            if stream_id_key(s.entry_id) > floor and (queues is None or s.queue in queues)
        ]
        return out[:count]

    async def follow(
        self, *, after: str, block_ms: int, queues: list[str] | None = None
    ) -> list[QueueEntry]:
        entries = await self.read(queues=queues, after=after)
        if entries or block_ms <= 0:
            return entries
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=block_ms / 1000)
        except TimeoutError:
            return []
        return await self.read(queues=queues, after=after)

    def _stored(self, violation_id: str) -> _Stored:
        try:
            return self._by_violation[violation_id]
        except KeyError:
            raise EntryNotFoundError(violation_id) from None

    async def get(self, violation_id: str) -> QueueEntry:
        return self._stored(violation_id).view()

    async def set_status(
        self, violation_id: str, status: EntryStatus, *, by: str, ts_ms: int, note: str = ""
    ) -> QueueEntry:
        stored = self._stored(violation_id)
        stored.status, stored.status_by, stored.status_ts_ms = status, by, ts_ms
        change = StatusChange(
            violation_id=violation_id, status=status, by=by, ts_ms=ts_ms, note=note
        )
        self._history.setdefault(violation_id, []).append(change)
        return stored.view()

    async def history(self, violation_id: str) -> list[StatusChange]:
        self._stored(violation_id)
        return list(self._history.get(violation_id, []))

    async def record_repeat(
        self, violation_id: str, *, ts_ms: int, repeat_id: str | None = None
    ) -> int:
        stored = self._stored(violation_id)
        if repeat_id is not None:
            if repeat_id in stored.repeat_ids:
                return stored.repeat_count
            stored.repeat_ids.add(repeat_id)
        stored.repeat_count += 1
        stored.last_repeat_ts_ms = ts_ms
        return stored.repeat_count

    async def queues(self) -> list[str]:
        return sorted({s.queue for s in self._entries})

    async def close(self) -> None:
        """Nothing to release."""
