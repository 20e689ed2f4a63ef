"""Red-light rule on hand-made tracks (working pixels); the line is y = 100, travel is up."""

from __future__ import annotations

import pytest

from services.common.boxes import BoxXYWH
from services.detector.rules import RedLightRule
from services.detector.signal import LightState, SignalTimeline
from services.detector.tracker import Move, Stay, TrackView


def red_signal() -> SignalTimeline:
    signal = SignalTimeline(confirm_frames=1)
    for frame in range(20):
        signal.update(frame=frame, reading=LightState.RED)
    return signal


def view(box: BoxXYWH, *, previous_box: BoxXYWH | None, stay: Stay | None = None) -> TrackView:
    return TrackView(
        track_id=1,
        box_xywh=box,
        size_wh=(box[2], box[3]),
        hits=10,
        established=True,
        coasting=False,
        last_move=None
        if previous_box is None
        else Move(from_box_xywh=previous_box, to_box_xywh=box, frames=1),
        stay=stay,
    )


def crossing_track(previous_box: BoxXYWH, box: BoxXYWH) -> TrackView:
    return view(box, previous_box=previous_box)


@pytest.mark.parametrize(
    ("previous_box", "box", "events"),
    [
        # A car's centre moves from y 105 to y 95.
        ((100.0, 92.0, 12.0, 26.0), (100.0, 82.0, 12.0, 26.0), 1),
        # A sliver along a lane line is handed the car's blob: no vehicle crossed.
        ((104.0, 80.0, 3.0, 50.0), (100.0, 82.0, 12.0, 26.0), 0),
        # A sliver itself moving across is no vehicle either.
        ((100.0, 104.0, 30.0, 2.0), (100.0, 94.0, 30.0, 2.0), 0),
    ],
)
def test_crossing_needs_a_vehicle_shape_at_both_ends(
    previous_box: BoxXYWH, box: BoxXYWH, events: int
) -> None:
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    rule.observe(crossing_track(previous_box, box), frame=10, ts_ms=1000)
    assert len(rule.judge(red_signal())) == events


def test_track_that_crossed_with_a_group_and_waits_behind_the_line_crosses_again() -> None:
    """Two riders nose to tail make one blob; its centre crosses on green as the first rides
    on, while the track stays with the second, who waits at the line and then runs the red."""
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    group_crosses = view((100.0, 80.0, 8.0, 40.0), previous_box=(100.0, 84.0, 8.0, 40.0))
    rule.observe(group_crosses, frame=3, ts_ms=300)
    waiting = view(
        (100.0, 100.0, 8.0, 12.0),
        previous_box=(100.0, 100.0, 8.0, 12.0),
        stay=Stay(anchor_xy=(104.0, 106.0), since_frame=5, since_ts_ms=500),
    )
    rule.observe(waiting, frame=8, ts_ms=800)
    runs = view((100.0, 92.0, 8.0, 12.0), previous_box=(100.0, 96.0, 8.0, 12.0))
    rule.observe(runs, frame=15, ts_ms=1500)
    assert [hit.frame for hit in rule.judge(red_signal())] == [3, 15]


def test_jitter_back_over_the_line_does_not_cross_again() -> None:
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    rule.observe(
        view((100.0, 86.0, 12.0, 26.0), previous_box=(100.0, 90.0, 12.0, 26.0)), frame=3, ts_ms=300
    )
    # It stops with its centre a pixel short of the line, then goes on.
    short = Stay(anchor_xy=(106.0, 101.0), since_frame=4, since_ts_ms=400)
    rule.observe(
        view((100.0, 88.0, 12.0, 26.0), previous_box=(100.0, 86.0, 12.0, 26.0), stay=short),
        frame=4,
        ts_ms=400,
    )
    rule.observe(
        view((100.0, 80.0, 12.0, 26.0), previous_box=(100.0, 88.0, 12.0, 26.0)), frame=9, ts_ms=900
    )
    assert [hit.frame for hit in rule.judge(red_signal())] == [3]
