"""Red-light rule on hand-made tracks (working pixels); the line is y = 100, travel is up."""

from __future__ import annotations

import pytest

from services.detector.geometry import BoxXYWH
from services.detector.rules import RedLightRule
from services.detector.signal import LightState, SignalTimeline
from services.detector.tracker import Move, TrackView


def red_signal() -> SignalTimeline:
    signal = SignalTimeline(confirm_frames=1)
    for frame in range(20):
        signal.update(frame=frame, reading=LightState.RED)
    return signal


def crossing_track(previous_box: BoxXYWH, box: BoxXYWH) -> TrackView:
    return TrackView(
        track_id=1,
        box_xywh=box,
        size_wh=(box[2], box[3]),
        hits=10,
        established=True,
        coasting=False,
        last_move=Move(from_box_xywh=previous_box, to_box_xywh=box, frames=1),
        stay=None,
    )


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
