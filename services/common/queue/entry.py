"""The records of the control-center queue: what the dispatcher writes and operators read.

:class:`DispatchedEntry` is the typed entry the dispatcher builds from a violation event (the
event's fields, unknown extras kept, plus where and how urgently). :class:`QueueEntry` is
that entry as the queue holds it, with its mutable state: status, version, repeats.
:class:`StatusChange` is one line of an entry's audit history.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.common.events import ViolationEvent


class EntryStatus(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"

    @property
    def closed(self) -> bool:
        """Whether the entry needs no more work (and may leave Redis after retention)."""
        return self in (EntryStatus.RESOLVED, EntryStatus.FALSE_POSITIVE)


class DispatchedEntry(ViolationEvent):
    """A violation as dispatched: the event (extras kept) enriched from the city catalogue.

    >>> e = DispatchedEntry.model_validate({"violation_id": "v", "type": "red_light",
    ...     "camera_id": "wuzhen-cam-01", "city": "wuzhen", "frame": 1, "ts_ms": 5,
    ...     "track_id": 7, "bbox_xywh": [0, 0, 1, 1], "confidence": 0.5, "lane": 2,
    ...     "district": "xizha", "priority": "high", "dispatched_ts_ms": 9}, strict=False)
    >>> (e.district, e.priority, e.to_dict()["lane"])
    ('xizha', 'high', 2)
    """

    district: str = Field(min_length=1, max_length=64)
    location: str | None = None
    lat: float | None = None
    lon: float | None = None
    unit: str | None = None
    priority: str = Field(min_length=1, max_length=32)
    dispatched_ts_ms: int = Field(ge=0)

    @classmethod
    def enrich(cls, event: ViolationEvent, **place: Any) -> DispatchedEntry:
        """``event`` plus the dispatch fields in ``place``, without validating again: the
        event was validated on its way in and the dispatcher computed the rest."""
        return cls.model_construct(**dict(event), **place)


class QueueEntry(BaseModel):
    """One work item as an operator sees it: the dispatched entry plus its current state.

    ``version`` counts status changes; a change names the version it was decided on, so of
    two operators acting on the same version only the first one wins.
    """

    model_config = ConfigDict(frozen=True)

    entry_id: str
    queue: str
    fields: DispatchedEntry
    status: EntryStatus = EntryStatus.NEW
    status_by: str | None = None
    status_ts_ms: int | None = None
    version: int = 0
    repeat_count: int = 0
    last_repeat_ts_ms: int | None = None
    archived: bool = False

    @property
    def violation_id(self) -> str:
        return self.fields.violation_id

    @property
    def score(self) -> int:
        """The entry's place in append order, as one integer (see :func:`entry_score`)."""
        return entry_score(self.entry_id)

    def to_feed_dict(self) -> dict[str, Any]:
        """The flat JSON object that ``citybrain feed --json`` prints."""
        return {
            **self.fields.to_dict(),
            "entry_id": self.entry_id,
            "queue": self.queue,
            "status": self.status.value,
            "status_by": self.status_by,
            "status_ts_ms": self.status_ts_ms,
            "version": self.version,
            "repeat_count": self.repeat_count,
            "last_repeat_ts_ms": self.last_repeat_ts_ms,
            "archived": self.archived,
        }


class StatusChange(BaseModel):
    """One audited change of an entry's status: who (the token's owner), when, from what."""

    model_config = ConfigDict(frozen=True)

    violation_id: str
    status: EntryStatus
    from_status: EntryStatus
    operator: str
    ts_ms: int
    note: str = ""
    version: int


# Entry ids are "<ms>-<n>" with n < SUB_MS_SLOTS, so that ms * SUB_MS_SLOTS + n orders
# entries in one integer that a float64 (a Redis sorted-set score) holds exactly.
SUB_MS_SLOTS = 1000


def entry_score(entry_id: str) -> int:
    """The sorted-set score of an entry id.

    >>> entry_score("1700000000000-7")
    1700000000000007
    """
    ms, _, n = entry_id.partition("-")
    return int(ms) * SUB_MS_SLOTS + int(n or 0)


def score_entry_id(score: int) -> str:
    """The inverse of :func:`entry_score`.

    >>> score_entry_id(1700000000000007)
    '1700000000000-7'
    """
    ms, n = divmod(score, SUB_MS_SLOTS)
    return f"{ms}-{n}"
