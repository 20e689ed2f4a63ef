"""The whole per-camera pipeline on synthetic streets: the contracts' rules end to end."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import pytest

from services.common.boxes import box_iou
from services.common.events import ViolationEvent, ViolationType
from services.common.frames import Frame
from services.detector.pipeline import DetectorPipeline
from simulators.feed import simulate_camera
from tests.unit.detector.synth import (
    FPS,
    T0_MS,
    Vehicle,
    cycle,
    frames,
    parked_from_the_start,
    render,
    scene,
    straight,
)


def run(
    count: int, vehicles: list[Vehicle], light_red: tuple[int, int], **kw: bool
) -> tuple[list[ViolationEvent], DetectorPipeline]:
    pipeline = DetectorPipeline(scene())
    events: list[ViolationEvent] = []
    for frame in frames(count, vehicles, cycle(red=light_red), **kw):
        events.extend(pipeline.process(frame))
    return events, pipeline


# The up lane: a car 64 px tall whose centre crosses y=200 when its top is at y=168.
def up_lane(first: int, **kw: int | None) -> Vehicle:
    return Vehicle(path=straight(start_xy=(300, 370), velocity_xy=(0, -8), first=first, **kw))


# Centre y = 370 + 32 - 8 * (f - first) crosses 200 at f = first + 25.25, i.e. frame first+26.
@pytest.mark.parametrize(
    ("first", "red", "expected_frames"),
    [
        (30, (40, 200), [56]),  # runs the red
        (30, (100, 200), []),  # crosses on green
        (30, (65, 200), []),  # crosses on amber: amber is not red
    ],
)
@pytest.mark.parametrize("jpeg", [True, False])
def test_red_light_crossing(
    first: int, red: tuple[int, int], expected_frames: list[int], jpeg: bool
) -> None:
    events, _ = run(110, [up_lane(first)], red, jpeg=jpeg)
    assert [e.frame for e in events] == expected_frames
    assert all(e.type == ViolationType.RED_LIGHT for e in events)


def test_car_waiting_at_red_stays_tracked_and_is_lawful() -> None:
    # Stops with its centre at y=258 (behind the line) for 60 s; the light stays red.
    stop_frame = 40 + 18
    vehicle = up_lane(40, stop_at=stop_frame, stop_for=600)
    events, pipeline = run(stop_frame + 590, [vehicle], (50, 10_000))
    assert events == []
    ids = {t.track_id for t in pipeline.tracks if t.established}
    assert len(ids) == 1, "a car standing for a minute must stay one detected track"


def test_one_event_per_stopped_car_that_then_runs_the_red() -> None:
    # Waits with its centre at y=258 for 10 s, then drives on through the red: frame 166.
    vehicle = up_lane(40, stop_at=58, stop_for=100)
    events, _ = run(220, [vehicle], (50, 10_000))
    assert [(e.type, e.frame) for e in events] == [(ViolationType.RED_LIGHT, 58 + 100 + 8)]


def parker(*, arrive: int, stand_s: float, x: float = 520) -> Vehicle:
    # Drives down from the top into the kerb zone; stops when its top reaches y=200.
    v = 8
    start_y = 60.0
    stop_at = arrive + round((200 - start_y) / v)
    return Vehicle(
        path=straight(
            start_xy=(x, start_y),
            velocity_xy=(0, v),
            first=arrive,
            stop_at=stop_at,
            stop_for=round(stand_s * FPS),
        ),
        size_wh=(44, 70),
        bgr=(180, 170, 40),
    )


def test_parking_fires_once_when_dwell_reaches_max() -> None:
    # Stands 12 s in a zone with max_dwell_s 5: one event, about 5 s after it stopped.
    events, pipeline = run(260, [parker(arrive=20, stand_s=12)], (10_000, 10_001))
    assert [e.type for e in events] == [ViolationType.ILLEGAL_PARKING]
    stop_frame = 20 + 18
    assert abs(events[0].frame - (stop_frame + 5 * FPS)) <= 5
    # Its stay is timed from when it stopped, after the run began.
    (event,) = events
    assert event.parked_since_ts_ms == event.ts_ms - 5000
    assert not event.parked_since_run_start
    assert pipeline.tracks == [], "the parked car left: no ghost may stay behind"


@pytest.mark.parametrize(("stand_s", "reported"), [(12.0, True), (3.5, False)])
def test_a_car_parked_from_the_first_frame_is_found_when_it_leaves(
    stand_s: float, reported: bool
) -> None:
    """It is in the background from the first frame, so nothing sees it until it drives
    off; then the ghost of its place and its departure show it stood there all along. Its
    dwell counts from the first frame: the violation is at 5 s (``max_dwell_s``), decided
    once it has left."""
    events, pipeline = run(200, [parked_from_the_start(stand_s=stand_s)], (10_000, 10_001))
    assert [e.type for e in events] == ([ViolationType.ILLEGAL_PARKING] if reported else [])
    if reported:
        (event,) = events
        assert (event.frame, event.ts_ms) == (5 * FPS, T0_MS + 5000)
        # It may have stood there before this run began: another run may have reported it.
        assert event.parked_since_ts_ms == event.tracker_epoch_ms == T0_MS
        assert event.parked_since_run_start
        assert event.decided_ts_ms is not None and event.decided_ts_ms > T0_MS + stand_s * 1000
        # Its place: the ghost it left, and the front of it as it first pulled out.
        assert box_iou(event.bbox_xywh, (520, 200, 44, 70)) >= 0.7
    assert pipeline.tracks == [], "no ghost may stay behind"


def test_short_stop_in_zone_and_long_stop_outside_are_lawful() -> None:
    inside_briefly = parker(arrive=20, stand_s=3)
    outside = parker(arrive=20, stand_s=30, x=380)
    events, _ = run(420, [inside_briefly, outside], (10_000, 10_001))
    assert events == []


def test_events_are_deterministic() -> None:
    first, _ = run(110, [up_lane(30)], (40, 200))
    second, _ = run(110, [up_lane(30)], (40, 200))
    assert [e.violation_id for e in first] == [e.violation_id for e in second]


@pytest.mark.parametrize(
    ("variant", "offset_s", "expected"),
    [("led", 19.0, "red"), ("led_horizontal", 5.0, "green"), ("led", 13.0, "amber")],
)
@pytest.mark.parametrize("jpeg", [True, False])
def test_small_led_head_is_read_from_the_first_frames(
    variant: str, offset_s: float, expected: str, jpeg: bool
) -> None:
    # A 9x22 px head with bloom at 1080p, the clip starting mid-phase: no warm-up, and the
    # JPEG path (reduced-scale colour decode) reads it as the BGR path (full resolution) does.
    camera = simulate_camera(
        "wuzhen-cam-01",
        seconds=0.5,
        variant=variant,
        resolution_wh=(1920, 1080),
        signal_offset_s=offset_s,
    )
    pipeline = DetectorPipeline(camera.scene)
    for frame in camera.jpeg_frames() if jpeg else camera.frames():
        pipeline.process(frame)
    assert pipeline.signal_state.value == expected == camera.light_state(0)


def exposure_jump(frame: int) -> float:
    """Auto-exposure brightens the whole picture by a third over three frames at frame 90."""
    return 1.0 + 0.33 * min(max(frame - 89, 0), 3) / 3


@pytest.mark.parametrize("gain", [exposure_jump, lambda frame: 2 - exposure_jump(frame)])
def test_exposure_jump_loses_no_standing_vehicle_and_raises_nothing(
    gain: Callable[[int], float],
) -> None:
    """A car stands 12 s in a zone with max_dwell_s 5 while the exposure steps 3 s after it
    stopped: still one parking event, from the same track, and no other."""
    vehicles = [parker(arrive=20, stand_s=12)]
    light = cycle(red=(10_000, 10_001))
    pipeline = DetectorPipeline(scene())
    events: list[ViolationEvent] = []
    for index in range(260):
        image = render(index, vehicles, light)
        image = cv2.convertScaleAbs(image, alpha=gain(index))
        frame = Frame(
            camera_id="synth-cam", index=index, ts_ms=T0_MS + round(index * 1000 / FPS), bgr=image
        )
        events.extend(pipeline.process(frame))
    assert [e.type for e in events] == [ViolationType.ILLEGAL_PARKING]
    assert abs(events[0].frame - (20 + 18 + 5 * FPS)) <= 5
