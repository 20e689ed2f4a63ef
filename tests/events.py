"""Violation events and bus messages for tests: one factory instead of a copy per file."""

from __future__ import annotations

from services.common.bus import BusMessage
from services.common.events import VIOLATIONS_TOPIC, ViolationEvent, ViolationType

# Tuesday 14 November 2023, 22:13:20 UTC: a fixed, plausible detection time.
EVENT_TS_MS = 1_700_000_000_000


def make_event(
    *,
    violation_type: ViolationType = ViolationType.RED_LIGHT,
    camera_id: str = "wuzhen-cam-01",
    city: str | None = None,
    frame: int = 100,
    ts_ms: int = EVENT_TS_MS,
    track_id: int = 7,
    bbox_xywh: tuple[int, int, int, int] = (10, 20, 30, 40),
    confidence: float = 0.9,
    snapshot: str | None = None,
    tracker_epoch_ms: int | None = None,
    parked_since_ts_ms: int | None = None,
    decided_ts_ms: int | None = None,
) -> ViolationEvent:
    """A valid event; ``city`` defaults to the camera id's prefix (``hangzhou-cam-03`` →
    ``hangzhou``)."""
    return ViolationEvent.create(
        violation_type=violation_type,
        camera_id=camera_id,
        city=city or camera_id.split("-", 1)[0],
        frame=frame,
        ts_ms=ts_ms,
        track_id=track_id,
        bbox_xywh=bbox_xywh,
        confidence=confidence,
        snapshot=snapshot,
        tracker_epoch_ms=tracker_epoch_ms,
        parked_since_ts_ms=parked_since_ts_ms,
        decided_ts_ms=decided_ts_ms,
    )


def as_messages(*values: bytes, partition: int = 0) -> list[BusMessage]:
    """``values`` as consecutive messages of one partition of the violations topic."""
    return [
        BusMessage(
            topic=VIOLATIONS_TOPIC.name, partition=partition, offset=offset, key=None, value=value
        )
        for offset, value in enumerate(values)
    ]
