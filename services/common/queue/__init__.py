"""The control-center queue seam: what operators watch, acknowledge and resolve.

An entry is appended once per ``violation_id`` (appending it again is a no-op, so a
dispatcher that crashes between the write and its offset commit never writes twice).
Entries are never deleted: an operator changes an entry's status, and every change is kept
in an audit history. Two implementations share this async interface: :mod:`.redis_streams`
(production) and :mod:`.memory` (unit tests and the embedded ``make run``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict


class EntryStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


class QueueEntry(BaseModel):
    """One work item as an operator sees it: the dispatched fields plus its current status."""

    model_config = ConfigDict(frozen=True)

    entry_id: str
    queue: str
    fields: dict[str, Any]
    status: EntryStatus = EntryStatus.NEW
    status_by: str | None = None
    status_ts_ms: int | None = None
    repeat_count: int = 0
    last_repeat_ts_ms: int | None = None

    @property
    def violation_id(self) -> str:
        return str(self.fields["violation_id"])

    def to_feed_dict(self) -> dict[str, Any]:
        """The flat JSON object that ``citybrain feed --json`` prints."""
        return {
            **self.fields,
            "entry_id": self.entry_id,
            "queue": self.queue,
            "status": self.status.value,
            "status_by": self.status_by,
            "status_ts_ms": self.status_ts_ms,
            "repeat_count": self.repeat_count,
            "last_repeat_ts_ms": self.last_repeat_ts_ms,
        }


class StatusChange(BaseModel):
    """One audited change of an entry's status."""

    model_config = ConfigDict(frozen=True)

    violation_id: str
    status: EntryStatus
    by: str
    ts_ms: int
    note: str = ""


# Plain dataclasses, not models: the dispatcher builds one of each per event, and they
# only carry values that were validated on their way in.
@dataclass(frozen=True, slots=True)
class PendingEntry:
    """An entry on its way into ``queue``; ``fields`` must hold ``violation_id``."""

    fields: dict[str, Any]
    queue: str


@dataclass(frozen=True, slots=True)
class AppendResult:
    entry_id: str
    created: bool


class EntryNotFoundError(KeyError):
    """No entry has that violation id."""


class QueueUnavailableError(ConnectionError):
    """The queue's store cannot be reached right now; the caller should retry."""


class ControlCenterQueue(Protocol):
    async def append(self, fields: Mapping[str, Any], *, queue: str) -> AppendResult:
        """Append an entry to ``queue`` unless its ``violation_id`` is already queued."""
        ...

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        """:meth:`append` each entry, in order, in one round trip; as idempotent per entry.

        On :class:`QueueUnavailableError` some of them may be written: retry the whole batch.
        """
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

    async def get(self, violation_id: str) -> QueueEntry:
        """The entry for ``violation_id``; raises :class:`EntryNotFoundError`."""
        ...

    async def set_status(
        self, violation_id: str, status: EntryStatus, *, by: str, ts_ms: int, note: str = ""
    ) -> QueueEntry:
        """Change an entry's status and record the change in its history."""
        ...

    async def history(self, violation_id: str) -> list[StatusChange]:
        """Every status change of the entry, oldest first."""
        ...

    async def record_repeat(
        self, violation_id: str, *, ts_ms: int, repeat_id: str | None = None
    ) -> int:
        """Count one more grouped repeat on an existing entry; returns the new count.

        With ``repeat_id`` (the repeat's own violation id) it is idempotent: a repeat that was
        already counted leaves the count as it is.
        """
        ...

    async def queues(self) -> list[str]:
        """The names of all queues that hold entries."""
        ...

    async def close(self) -> None: ...


def open_queue(url: str, *, prefix: str = "citybrain") -> ControlCenterQueue:
    """Open a queue from a URL: ``redis://HOST:PORT[/DB]`` or ``memory://``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from services.common.queue.memory import InMemoryQueue

        return InMemoryQueue()
    if scheme in ("redis", "rediss", "unix"):
        from services.common.queue.redis_streams import RedisStreamsQueue

        return RedisStreamsQueue.from_url(url, prefix=prefix)
    raise ValueError(f"queue URL {url!r}: scheme must be redis:// or memory://")


def stream_id_key(entry_id: str) -> tuple[int, int]:
    """Order stream ids ("ms-seq") numerically, as Redis does."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
