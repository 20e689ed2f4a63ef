"""An in-process control-center queue with the Redis one's ordering and idempotency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
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


class InMemoryQueue:
    """Entries are kept in append order; ids look like Redis stream ids.

    Entries are immutable views, replaced whole when their status or repeat count changes.
    """

    def __init__(self) -> None:
        self._order: list[str] = []
        self._by_violation: dict[str, QueueEntry] = {}
        self._repeat_ids: dict[str, set[str]] = {}
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
        entry = QueueEntry(entry_id=self._next_id(), queue=queue, fields=dict(fields))
        self._order.append(violation_id)
        self._by_violation[violation_id] = entry
        self._changed.set()
        return AppendResult(entry_id=entry.entry_id, created=True)

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        return [await self.append(e.fields, queue=e.queue) for e in entries]

    async def read(
        self, *, queues: list[str] | None = None, after: str = "0-0", count: int = 100
    ) -> list[QueueEntry]:
        floor = stream_id_key(after)
        entries = (self._by_violation[v] for v in self._order)
        out = [
            e
            for e in entries
            if stream_id_key(e.entry_id) > floor and (queues is None or e.queue in queues)
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

    async def get(self, violation_id: str) -> QueueEntry:
        try:
            return self._by_violation[violation_id]
        except KeyError:
            raise EntryNotFoundError(violation_id) from None

    async def _update(self, violation_id: str, **changes: Any) -> QueueEntry:
        entry = (await self.get(violation_id)).model_copy(update=changes)
        self._by_violation[violation_id] = entry
        return entry

    async def set_status(
        self, violation_id: str, status: EntryStatus, *, by: str, ts_ms: int, note: str = ""
    ) -> QueueEntry:
        entry = await self._update(violation_id, status=status, status_by=by, status_ts_ms=ts_ms)
        change = StatusChange(
            violation_id=violation_id, status=status, by=by, ts_ms=ts_ms, note=note
        )
        self._history.setdefault(violation_id, []).append(change)
        return entry

    async def history(self, violation_id: str) -> list[StatusChange]:
        await self.get(violation_id)
        return list(self._history.get(violation_id, []))

    async def record_repeat(
        self, violation_id: str, *, ts_ms: int, repeat_id: str | None = None
    ) -> int:
        entry = await self.get(violation_id)
        if repeat_id is not None:
            seen = self._repeat_ids.setdefault(violation_id, set())
            if repeat_id in seen:
                return entry.repeat_count
            seen.add(repeat_id)
        entry = await self._update(
            violation_id, repeat_count=entry.repeat_count + 1, last_repeat_ts_ms=ts_ms
        )
        return entry.repeat_count

    async def queues(self) -> list[str]:
        return sorted({e.queue for e in self._by_violation.values()})

    async def close(self) -> None:
        """Nothing to release."""
