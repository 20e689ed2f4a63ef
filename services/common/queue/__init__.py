"""The control-center queue seam: what operators watch, acknowledge and resolve.

An entry is appended once per ``violation_id`` (appending it again is a no-op, so a
dispatcher that crashes between the write and its offset commit never writes twice). An
operator changes an entry's status by compare-and-set on its version, and every change is
kept in an audit history. The store answers the operators' questions itself: filtered pages
newest first, counts for the tiles and a per-minute series, from indexes it maintains as it
writes, never by reading every entry. Every append and status change is also a record in a
change log, which the dashboard's live stream follows.

Two implementations share this async interface: :mod:`.redis_streams` (production) and
:mod:`.memory` (unit tests and the embedded ``make run``). The dispatcher needs only
:class:`QueueWriter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from services.common.queue.entry import (
    SUB_MS_SLOTS,
    DispatchedEntry,
    EntryStatus,
    QueueEntry,
    StatusChange,
    entry_score,
    score_entry_id,
)

__all__ = [
    "SUB_MS_SLOTS",
    "AppendResult",
    "Change",
    "ChangeKind",
    "ControlCenterQueue",
    "DispatchedEntry",
    "EntryFilter",
    "EntryNotFoundError",
    "EntryPage",
    "EntryStatus",
    "PendingEntry",
    "QueueEntry",
    "QueueUnavailableError",
    "QueueWriter",
    "StatusChange",
    "StatusConflictError",
    "TileCounts",
    "entry_score",
    "open_queue",
    "score_entry_id",
    "stream_id_key",
]


# Plain dataclasses, not models: the dispatcher builds one of each per event, and they
# only carry values that were validated on their way in.
@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry on its way into ``queue``."""

    fields: DispatchedEntry
    queue: str


@dataclass(frozen=True, slots=True)
class AppendResult:
    entry_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """What an operator narrows the queue to; ``None`` matches anything.

    ``since_ms`` / ``until_ms`` bound the time the entry was queued (its id), inclusive.
    """

    city: str | None = None
    district: str | None = None
    type: str | None = None
    status: EntryStatus | None = None
    priority: str | None = None
    camera_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def indexed(self) -> dict[str, str]:
        """The equality filters, by index name (the entry hash's field names in Redis)."""
        pairs = {
            "city": self.city,
            "district": self.district,
            "type": self.type,
            "status": self.status.value if self.status else None,
            "priority": self.priority,
            "camera": self.camera_id,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    def matches(self, entry: QueueEntry) -> bool:
        """Whether ``entry`` passes every filter (for stores without the indexes)."""
        f = entry.fields
        values = {
            "city": f.city,
            "district": f.district,
            "type": f.type.value,
            "status": entry.status.value,
            "priority": f.priority,
            "camera": f.camera_id,
        }
        ms = entry.score // SUB_MS_SLOTS
        return (
            all(values[k] == v for k, v in self.indexed().items())
            and (self.since_ms is None or ms >= self.since_ms)
            and (self.until_ms is None or ms <= self.until_ms)
        )

    def score_range(self, before: int | None) -> tuple[int, int]:
        """The scores to look in, ``(low, high)`` inclusive, below the cursor ``before``."""
        low = 0 if self.since_ms is None else self.since_ms * SUB_MS_SLOTS
        high = 2**62 if self.until_ms is None else (self.until_ms + 1) * SUB_MS_SLOTS - 1
        if before is not None:
            high = min(high, before - 1)
        return low, high


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Entries newest first; ``next_cursor`` continues below them, ``None`` at the end.

    A page may hold fewer entries than asked for and still have a next cursor: each call
    examines a bounded number of entries, so a rare filter never scans the whole queue.
    """

    entries: list[QueueEntry]
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class TileCounts:
    """Entries by current status, by type and by city (archived ones included)."""

    by_status: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    by_city: dict[str, int] = field(default_factory=dict)


class ChangeKind(StrEnum):
    ENTRY = "entry"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class Change:
    """One record of the change log: an entry appended or a status changed, as it was then.

    ``change_id`` orders the log ("ms-n", like a stream id); ``entry`` is the entry as it
    stood right after the change (for a new entry, its state at creation).
    """

    change_id: str
    kind: ChangeKind
    entry: QueueEntry


class EntryNotFoundError(KeyError):
    """No entry has that violation id."""


class QueueUnavailableError(ConnectionError):
    """The queue's store cannot be reached right now; the caller should retry."""


class StatusConflictError(Exception):
    """The status change lost: the entry is not at the version or status it required.

    ``current`` is the entry as it is now, so that the caller can show it.
    """

    def __init__(self, current: QueueEntry) -> None:
        super().__init__(
            f"entry {current.violation_id} is {current.status.value} at version {current.version}"
        )
        self.current = current


class QueueWriter(Protocol):
    """The dispatcher's side of the queue: append entries and count repeats, idempotently."""

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        """Append each entry unless its ``violation_id`` is queued, in order, in one round
        trip. On :class:`QueueUnavailableError` some may be written: retry the whole batch."""
        ...

    async def record_repeat(
        self, violation_id: str, *, ts_ms: int, repeat_id: str | None = None
    ) -> int:
        """Count one more grouped repeat on an existing entry; returns the new count.

        With ``repeat_id`` (the repeat's own violation id) it is idempotent: a repeat that was
        already counted leaves the count as it is.
        """
        ...

    async def close(self) -> None: ...


class ControlCenterQueue(QueueWriter, Protocol):
    async def append(self, fields: DispatchedEntry, *, queue: str) -> AppendResult:
        """:meth:`append_many` of one entry."""
        ...

    async def read(
        self, *, queues: list[str] | None = None, after: str = "0-0", count: int = 100
    ) -> list[QueueEntry]:
        """Up to ``count`` entries newer than ``after``, oldest first, across ``queues``."""
        ...

    async def follow(
        self, *, after: str, block_ms: int, queues: list[str] | None = None
    ) -> list[QueueEntry]:
        """Like :meth:`read`, but wait up to ``block_ms`` for a new entry if none is there."""
        ...

    async def query(
        self, where: EntryFilter, *, before: int | None = None, limit: int = 50
    ) -> EntryPage:
        """Entries matching ``where``, newest first, with scores below ``before``."""
        ...

    async def get(self, violation_id: str) -> QueueEntry:
        """The entry for ``violation_id``; raises :class:`EntryNotFoundError`."""
        ...

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
        """Change an entry's status and record the change in its history, atomically.

        Raises :class:`StatusConflictError` unless the entry's status is in ``allowed_from``
        and its version is ``expected_version`` (either check skipped when ``None``).
        """
        ...

    async def history(self, violation_id: str) -> list[StatusChange]:
        """Every status change of the entry, oldest first."""
        ...

    async def counts(self) -> TileCounts:
        """The tile counters, kept up to date on every write."""
        ...

    async def per_minute(self, *, since_ms: int, until_ms: int) -> dict[str, list[int]]:
        """Entries queued per minute by type, one count per minute from ``since_ms``."""
        ...

    async def changes(self, *, after: str, block_ms: int, count: int = 500) -> list[Change]:
        """Change-log records after ``after`` ("0-0" for all kept), oldest first; waits up to
        ``block_ms`` for one when there is none."""
        ...

    async def last_change_id(self) -> str:
        """The id of the newest change-log record ("0-0" if none)."""
        ...

    async def first_change_id(self) -> str:
        """The id of the oldest change-log record still kept ("0-0" if none)."""
        ...

    async def closed_before(self, ts_ms: int, *, limit: int) -> list[str]:
        """Violation ids of entries resolved or rejected before ``ts_ms``, oldest first."""
        ...

    async def evict(self, violation_id: str, *, version: int) -> bool:
        """Remove an entry (and its history and index records) from the queue if it is
        still at ``version``; the archive has it. Counters and the change log keep it."""
        ...

    async def queues(self) -> list[str]:
        """The names of all queues that hold entries."""
        ...


def open_queue(url: str, *, prefix: str = "citybrain", pool_size: int = 50) -> ControlCenterQueue:
    """Open a queue from a URL: ``redis://HOST:PORT[/DB]`` or ``memory://``.

    ``pool_size`` bounds the Redis connections this handle uses; open one handle per user
    (the API, a writer) so that one cannot starve the other.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from services.common.queue.memory import InMemoryQueue

        return InMemoryQueue()
    if scheme in ("redis", "rediss", "unix"):
        from services.common.queue.redis_streams import RedisStreamsQueue

        return RedisStreamsQueue.from_url(url, prefix=prefix, pool_size=pool_size)
    raise ValueError(f"queue URL {url!r}: scheme must be redis:// or memory://")


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """Order stream ids ("ms-seq") numerically, as Redis does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
