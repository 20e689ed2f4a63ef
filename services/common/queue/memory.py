"""An in-process control-center queue with the Redis one's ordering, idempotency, indexes,
compare-and-set and change log."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections import Counter, defaultdict, deque
from collections.abc import Sequence

from services.common.queue import (
    SUB_MS_SLOTS,
    AppendResult,
    Change,
    ChangeKind,
    DispatchedEntry,
    EntryFilter,
    EntryNotFoundError,
    EntryPage,
    EntryStatus,
    PendingEntry,
    QueueEntry,
    StatusChange,
    StatusConflictError,
    TileCounts,
    entry_score,
    stream_id_key,
)
from services.common.queue.redis_streams import DEFAULT_EVENTS_MAXLEN, QUERY_BUDGET, QUERY_ROUNDS


class InMemoryQueue:
    """Entries are kept in append order; ids look like Redis stream ids.

    Entries are immutable views, replaced whole when their status or repeat count changes.
    Each immutable filter value keeps the scores of its entries in order, so a filtered page
    walks the smallest of them from the cursor down, as the Redis queue does.
    """

    def __init__(self, *, events_maxlen: int = DEFAULT_EVENTS_MAXLEN) -> None:
        self._scores: list[int] = []
        self._by_score: dict[int, str] = {}
        self._by_violation: dict[str, QueueEntry] = {}
        self._index: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._repeat_ids: dict[str, set[str]] = {}
        self._history: dict[str, list[StatusChange]] = {}
        self._counts: Counter[str] = Counter()
        self._minutes: Counter[tuple[str, int]] = Counter()
        self._events: deque[Change] = deque(maxlen=events_maxlen)
        self._event_seq = itertools.count(1)
        self._last_id = (0, -1)
        self._changed = asyncio.Condition()

    def _next_id(self) -> str:
        ms = int(time.time() * 1000)
        last_ms, last_n = self._last_id
        if ms > last_ms:
            self._last_id = (ms, 0)
        elif last_n + 1 >= SUB_MS_SLOTS:
            self._last_id = (last_ms + 1, 0)
        else:
            self._last_id = (last_ms, last_n + 1)
        return f"{self._last_id[0]}-{self._last_id[1]}"

    def _log(self, kind: ChangeKind, entry: QueueEntry) -> None:
        change_id = f"{int(time.time() * 1000)}-{next(self._event_seq)}"
        self._events.append(Change(change_id=change_id, kind=kind, entry=entry))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def append(self, fields: DispatchedEntry, *, queue: str) -> AppendResult:
        (result,) = await self.append_many([PendingEntry(fields=fields, queue=queue)])
        return result

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        out = [self._append(e.fields, queue=e.queue) for e in entries]
        if any(r.created for r in out):
            await self._notify()
        return out

    def _append(self, fields: DispatchedEntry, *, queue: str) -> AppendResult:
        existing = self._by_violation.get(fields.violation_id)
        if existing is not None:
            return AppendResult(entry_id=existing.entry_id, created=False)
        entry = QueueEntry(entry_id=self._next_id(), queue=queue, fields=fields)
        score = entry.score
        self._scores.append(score)
        self._by_score[score] = entry.violation_id
        self._by_violation[entry.violation_id] = entry
        for key in _index_keys(entry):
            self._index[key].append(score)
        self._counts.update(["status:new", f"type:{fields.type.value}", f"city:{fields.city}"])
        self._minutes[(fields.type.value, score // SUB_MS_SLOTS // 60_000)] += 1
        self._log(ChangeKind.ENTRY, entry)
        return AppendResult(entry_id=entry.entry_id, created=True)

    def _present(self, scores: list[int]) -> list[QueueEntry]:
        ids = (self._by_score.get(s) for s in scores)
        return [self._by_violation[v] for v in ids if v is not None]

    async def read(
        self, *, queues: list[str] | None = None, after: str = "0-0", count: int = 100
    ) -> list[QueueEntry]:
        start = bisect.bisect_right(self._scores, entry_score(after))
        out: list[QueueEntry] = []
        for entry in self._present(self._scores[start:]):
            if queues is None or entry.queue in queues:
                out.append(entry)
                if len(out) >= count:
                    break
        return out

    async def follow(
        self, *, after: str, block_ms: int, queues: list[str] | None = None
    ) -> list[QueueEntry]:
        entries = await self.read(queues=queues, after=after)
        if entries or block_ms <= 0:
            return entries
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=block_ms / 1000)
            except TimeoutError:
                return []
        return await self.read(queues=queues, after=after)

    async def query(
        self, where: EntryFilter, *, before: int | None = None, limit: int = 50
    ) -> EntryPage:
        low, high = where.score_range(before)
        candidates = [self._scores]
        candidates += [
            self._index[(name, value)]
            for name, value in where.indexed().items()
            if name != "status"
        ]
        scores = min(candidates, key=len)
        stop = bisect.bisect_right(scores, high)
        start = bisect.bisect_left(scores, low)
        found: list[QueueEntry] = []
        budget = QUERY_BUDGET * QUERY_ROUNDS
        position = stop
        while position > start and budget > 0 and len(found) < limit:
            position -= 1
            budget -= 1
            vid = self._by_score.get(scores[position])
            if vid is not None and where.matches(self._by_violation[vid]):
                found.append(self._by_violation[vid])
        exhausted = position <= start
        next_cursor = None if exhausted else scores[position]
        return EntryPage(entries=found, next_cursor=next_cursor)

    async def get(self, violation_id: str) -> QueueEntry:
        try:
            return self._by_violation[violation_id]
        except KeyError:
            raise EntryNotFoundError(violation_id) from None

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
        current = await self.get(violation_id)
        if (expected_version is not None and current.version != expected_version) or (
            allowed_from is not None and current.status not in allowed_from
        ):
            raise StatusConflictError(current)
        entry = current.model_copy(
            update={
                "status": status,
                "status_by": operator,
                "status_ts_ms": ts_ms,
                "version": current.version + 1,
            }
        )
        self._by_violation[violation_id] = entry
        self._counts[f"status:{current.status.value}"] -= 1
        self._counts[f"status:{status.value}"] += 1
        change = StatusChange(
            violation_id=violation_id,
            status=status,
            from_status=current.status,
            operator=operator,
            ts_ms=ts_ms,
            note=note,
            version=entry.version,
        )
        self._history.setdefault(violation_id, []).append(change)
        self._log(ChangeKind.STATUS, entry)
        await self._notify()
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
        entry = entry.model_copy(
            update={"repeat_count": entry.repeat_count + 1, "last_repeat_ts_ms": ts_ms}
        )
        self._by_violation[violation_id] = entry
        return entry.repeat_count

    async def counts(self) -> TileCounts:
        out = TileCounts()
        groups = {"status": out.by_status, "type": out.by_type, "city": out.by_city}
        for key, value in self._counts.items():
            group, _, name = key.partition(":")
            if value > 0:
                groups[group][name] = value
        return out

    async def per_minute(self, *, since_ms: int, until_ms: int) -> dict[str, list[int]]:
        minutes = range(since_ms // 60_000, until_ms // 60_000 + 1)
        types = (await self.counts()).by_type
        return {name: [self._minutes[(name, m)] for m in minutes] for name in types}

    async def changes(self, *, after: str, block_ms: int, count: int = 500) -> list[Change]:
        floor = stream_id_key(after)
        found = [c for c in self._events if stream_id_key(c.change_id) > floor][:count]
        if found or block_ms <= 0:
            return found
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=block_ms / 1000)
            except TimeoutError:
                return []
        return [c for c in self._events if stream_id_key(c.change_id) > floor][:count]

    async def last_change_id(self) -> str:
        return self._events[-1].change_id if self._events else "0-0"

    async def first_change_id(self) -> str:
        return self._events[0].change_id if self._events else "0-0"

    async def closed_before(self, ts_ms: int, *, limit: int) -> list[str]:
        closed = [
            e
            for e in self._by_violation.values()
            if e.status.closed and e.status_ts_ms is not None and e.status_ts_ms < ts_ms
        ]
        closed.sort(key=lambda e: e.status_ts_ms or 0)
        return [e.violation_id for e in closed[:limit]]

    async def evict(self, violation_id: str, *, version: int) -> bool:
        entry = self._by_violation.get(violation_id)
        if entry is None or entry.version != version:
            return False
        del self._by_violation[violation_id]
        del self._by_score[entry.score]
        self._history.pop(violation_id, None)
        self._repeat_ids.pop(violation_id, None)
        return True

    async def queues(self) -> list[str]:
        return sorted({e.queue for e in self._by_violation.values()})

    async def close(self) -> None:
        """Nothing to release."""


def _index_keys(entry: QueueEntry) -> list[tuple[str, str]]:
    f = entry.fields
    return [
        ("city", f.city),
        ("district", f.district),
        ("type", f.type.value),
        ("priority", f.priority),
        ("camera", f.camera_id),
    ]
