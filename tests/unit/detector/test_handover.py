"""A camera handed to another detector: the new owner replays recent frames silently and then
reports what the old owner would have, under the same violation ids."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from services.common.events import ViolationEvent
from services.common.frames import Frame
from services.detector.metrics import DetectorMetrics
from services.detector.worker import SILENCE_MS, DetectorWorker
from tests.unit.detector.synth import FPS, Vehicle, cycle, frames, scene, straight


def worker(published: list[ViolationEvent]) -> DetectorWorker:
    return DetectorWorker(
        scenes=lambda _camera: scene(),
        sinks=[published.append],
        metrics=DetectorMetrics.create(CollectorRegistry()),
    )


def runner() -> Vehicle:
    # Crosses the stop line at frame 56, on red.
    return Vehicle(path=straight(start_xy=(300, 370), velocity_xy=(0, -8), first=30))


def parker() -> Vehicle:
    # Stops in the kerb zone at frame 38 and stands 12 s (max_dwell_s 5): reported near 88.
    return Vehicle(
        path=straight(
            start_xy=(520, 60.0), velocity_xy=(0, 8), first=20, stop_at=38, stop_for=round(12 * FPS)
        ),
        size_wh=(44, 70),
        bgr=(180, 170, 40),
    )


@pytest.mark.parametrize(
    ("vehicle", "count", "red", "handover_at", "replay_frames"),
    [
        (runner, 110, (40, 200), 50, 30),  # handed over just before the crossing
        (parker, 260, (10_000, 10_001), 70, 60),  # handed over in the middle of the dwell
    ],
)
def test_new_owner_reports_what_the_old_would_under_the_same_ids(
    vehicle: object, count: int, red: tuple[int, int], handover_at: int, replay_frames: int
) -> None:
    stream = list(frames(count, [vehicle()], cycle(red=red)))  # type: ignore[operator]
    old_events: list[ViolationEvent] = []
    old = worker(old_events)
    for frame in stream:
        old.handle(frame)
    assert old_events, "the scenario must hold a violation after the handover"

    new_events: list[ViolationEvent] = []
    new = worker(new_events)
    for frame in stream[handover_at - replay_frames : handover_at]:
        new.handle(replace(frame, replay=True))
    for frame in stream[handover_at:]:
        new.handle(frame)

    after = [e.violation_id for e in old_events if e.frame >= handover_at]
    assert [e.violation_id for e in new_events] == after
    assert new.stats.frames_replayed == replay_frames


def test_replayed_frames_publish_nothing() -> None:
    stream = list(frames(110, [runner()], cycle(red=(40, 200))))
    published: list[ViolationEvent] = []
    replaying = worker(published)
    for frame in stream:
        replaying.handle(replace(frame, replay=True))
    assert published == []
    assert replaying.stats.frames_processed == 0


def test_a_camera_coming_back_restarts_its_pipeline() -> None:
    stream: list[Frame] = list(frames(60, [runner()], cycle(red=(40, 200))))
    published: list[ViolationEvent] = []
    w = worker(published)
    for frame in stream[:20]:
        w.handle(frame)
    later = replace(stream[20], ts_ms=stream[20].ts_ms + 60_000, replay=True)
    w.handle(later)
    assert w.stats.restarts == 1


def test_a_camera_silent_for_long_restarts_its_pipeline_and_a_short_gap_does_not() -> None:
    stream: list[Frame] = list(frames(60, [runner()], cycle(red=(40, 200))))
    w = worker([])
    for frame in stream[:20]:
        w.handle(frame)
    w.handle(replace(stream[20], ts_ms=stream[19].ts_ms + SILENCE_MS // 2))
    assert w.stats.restarts == 0
    w.handle(replace(stream[21], ts_ms=stream[19].ts_ms + SILENCE_MS // 2 + SILENCE_MS + 1))
    assert w.stats.restarts == 1
