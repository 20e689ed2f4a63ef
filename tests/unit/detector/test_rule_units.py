"""ParkingRule, judging a crossing on amber, a crossing made while coasting, and both
rules' ``retain``, on hand-made tracks.

Working pixels; the zone is the square (100, 100)-(200, 200), its max dwell 10 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.common.arrays import PointXY
from services.common.boxes import BoxXYWH
from services.common.events import ViolationType
from services.detector.rules import ParkingRule, RedLightRule, RuleHit, Zone
from services.detector.signal import LightState, SignalTimeline
from services.detector.tracker import Move, Stay, TrackView
from tests.unit.detector.test_rules import crossing_track

ZONE = Zone(
    name="hotel-entrance",
    polygon_xy=np.array([[100, 100], [200, 100], [200, 200], [100, 200]], np.float32),
    max_dwell_s=10.0,
)
STILL_SINCE_MS = 1_000_000
# A car's centre moving from y 105 to y 95 across the line y = 100, upwards.
CROSSING: tuple[BoxXYWH, BoxXYWH] = ((100.0, 92.0, 12.0, 26.0), (100.0, 82.0, 12.0, 26.0))


def parked(
    *,
    anchor: PointXY | None = (150.0, 150.0),
    track_id: int = 3,
    still_since_frame: int = 40,
    established: bool = True,
) -> TrackView:
    stay = (
        None
        if anchor is None
        else Stay(anchor_xy=anchor, since_frame=still_since_frame, since_ts_ms=STILL_SINCE_MS)
    )
    return TrackView(
        track_id=track_id,
        box_xywh=(140.0, 137.0, 20.0, 26.0),
        size_wh=(20.0, 26.0),
        hits=30,
        established=established,
        coasting=False,
        last_move=None,
        stay=stay,
    )


@pytest.mark.parametrize(
    ("track", "dwell_s", "hit"),
    [
        (parked(), 10.0, True),  # exactly max_dwell_s: the frame where the dwell reaches it
        (parked(), 9.9, False),
        (parked(anchor=(250.0, 150.0)), 60.0, False),  # standing outside the zone
        (parked(anchor=None), 60.0, False),  # moving, not standing
        (parked(established=False), 60.0, False),  # not yet a vehicle
        (parked(anchor=(100.0, 150.0)), 60.0, True),  # on the zone's edge
    ],
    ids=["at-max-dwell", "before", "outside", "moving", "not-established", "edge"],
)
def test_parking_is_a_stay_in_a_zone_of_max_dwell(
    track: TrackView, dwell_s: float, hit: bool
) -> None:
    rule = ParkingRule([ZONE])
    ts_ms = STILL_SINCE_MS + round(dwell_s * 1000)
    found = rule.observe(track, frame=140, ts_ms=ts_ms)
    if not hit:
        assert found is None
        return
    assert found is not None
    assert (found.violation_type, found.track_id, found.frame, found.ts_ms) == (
        ViolationType.ILLEGAL_PARKING,
        track.track_id,
        140,
        ts_ms,
    )
    assert found.box_xywh == track.box_xywh
    assert found.confidence == 0.99


def test_one_parking_event_per_stay_and_a_new_one_for_the_next_stay() -> None:
    rule = ParkingRule([ZONE])
    late_ms = STILL_SINCE_MS + 20_000
    assert rule.observe(parked(), frame=140, ts_ms=late_ms) is not None
    assert rule.observe(parked(), frame=141, ts_ms=late_ms + 100) is None
    # The vehicle moved off and stopped again: a new stay, a new event.
    assert rule.observe(parked(still_since_frame=300), frame=400, ts_ms=late_ms) is not None


def test_parking_retain_forgets_the_stays_of_ended_tracks_only() -> None:
    rule = ParkingRule([ZONE])
    late_ms = STILL_SINCE_MS + 20_000
    for track_id in (3, 4):
        assert rule.observe(parked(track_id=track_id), frame=140, ts_ms=late_ms) is not None
    rule.retain({4})
    # Track 3 ended: were its id reused for the same stay, it would be reported again.
    assert rule.observe(parked(track_id=3), frame=150, ts_ms=late_ms) is not None
    assert rule.observe(parked(track_id=4), frame=150, ts_ms=late_ms) is None


def test_in_zone() -> None:
    rule = ParkingRule([ZONE])
    assert rule.in_zone((150.0, 150.0))
    assert not rule.in_zone((50.0, 150.0))


def timeline(states: list[LightState]) -> SignalTimeline:
    """One reading a frame, from frame 0; every state confirmed at once."""
    signal = SignalTimeline(confirm_frames=1)
    for frame, state in enumerate(states):
        signal.update(frame=frame, reading=state)
    return signal


@pytest.mark.parametrize(
    ("state", "events"),
    [(LightState.RED, 1), (LightState.AMBER, 0), (LightState.GREEN, 0)],
)
def test_a_crossing_is_judged_on_the_light_at_its_frame(state: LightState, events: int) -> None:
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    rule.observe(crossing_track(*CROSSING), frame=10, ts_ms=1000)
    # Red before and after: only the state at the crossing's own frame counts.
    states = [LightState.RED] * 10 + [state] + [LightState.RED] * 9
    hits = rule.judge(timeline(states))
    assert [(h.violation_type, h.track_id, h.frame) for h in hits] == [
        (ViolationType.RED_LIGHT, 1, 10)
    ] * events


def test_a_crossing_waits_until_its_light_is_decided() -> None:
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    rule.observe(crossing_track(*CROSSING), frame=10, ts_ms=1000)
    signal = SignalTimeline(confirm_frames=3)
    for frame in range(10):
        signal.update(frame=frame, reading=LightState.RED)
    signal.update(frame=10, reading=LightState.GREEN)
    signal.update(frame=11, reading=LightState.GREEN)
    assert signal.decided_through == 9
    assert rule.judge(signal) == []  # green from frame 10 may yet be confirmed
    signal.update(frame=12, reading=LightState.RED)  # it was a glint
    assert signal.decided_through == 12
    assert [h.frame for h in rule.judge(signal)] == [10]
    assert rule.judge(signal) == []  # judged once


def test_red_light_retain_lets_an_ended_track_id_cross_again() -> None:
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    red = timeline([LightState.RED] * 20)
    rule.observe(crossing_track(*CROSSING), frame=10, ts_ms=1000)
    assert len(rule.judge(red)) == 1
    rule.observe(crossing_track(*CROSSING), frame=11, ts_ms=1100)
    assert rule.judge(red) == []  # at most one event per track
    rule.retain(set())  # track 1 ended; a new track with its id is a new vehicle
    rule.observe(crossing_track(*CROSSING), frame=12, ts_ms=1200)
    assert [h.frame for h in rule.judge(red)] == [12]


def test_red_light_retain_keeps_crossings_not_yet_judged() -> None:
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    rule.observe(crossing_track(*CROSSING), frame=10, ts_ms=1000)
    rule.retain(set())
    assert [h.frame for h in rule.judge(timeline([LightState.RED] * 20))] == [10]


# A bus coasts (its blob merged) from frame 10, its centre at y 130, to frame 16, at y 70.
BUS_AT = {10: (100.0, 80.0, 24.0, 100.0), 16: (100.0, 20.0, 24.0, 100.0)}


def coasting_bus_crosses(rule: RedLightRule, frame_ms: dict[int, int]) -> RuleHit:
    """Feed the rule the frames in ``frame_ms`` (index: capture ms) while the bus coasts,
    then frame 16, where it is seen again past the line; the one hit on red."""
    for frame, ts_ms in frame_ms.items():  # coasting: no move seen, only the frame times
        rule.observe(parked(anchor=None), frame=frame, ts_ms=ts_ms)
    coasted = TrackView(
        track_id=1,
        box_xywh=BUS_AT[16],
        size_wh=(24.0, 100.0),
        hits=30,
        established=True,
        coasting=False,
        last_move=Move(from_box_xywh=BUS_AT[10], to_box_xywh=BUS_AT[16], frames=6),
        stay=None,
    )
    rule.observe(coasted, frame=16, ts_ms=frame_ms[16])
    (hit,) = rule.judge(timeline([LightState.RED] * 20))
    return hit


@pytest.mark.parametrize(
    ("frame_ms", "stamped_frame"),
    [
        (100, 13),  # a 0.6 s coast: the centre passed y 100 half way, at frame 13
        (16, 16),  # 0.1 s at 60 fps: maybe one picture repeated; stamped where it was seen
    ],
)
def test_a_crossing_made_while_coasting_is_stamped_where_the_move_met_the_line(
    frame_ms: int, stamped_frame: int
) -> None:
    """Its box and picture are those of frame 16, where it was seen again."""
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    hit = coasting_bus_crosses(rule, {f: f * frame_ms + 7 for f in range(10, 17)})
    assert (hit.frame, hit.ts_ms) == (stamped_frame, stamped_frame * frame_ms + 7)
    assert (hit.seen_frame, hit.box_xywh) == (16, BUS_AT[16])


def test_a_coasted_crossing_over_skipped_frames_is_stamped_at_the_next_frame_seen() -> None:
    """A live feed skipped frames 12 to 14 (they came late): the move meets the line at
    frame 13, which never came, so the crossing is stamped at frame 15, the next one seen."""
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    hit = coasting_bus_crosses(rule, {f: f * 100 for f in (10, 11, 15, 16)})
    assert (hit.frame, hit.ts_ms, hit.seen_frame) == (15, 1500, 16)


@pytest.mark.parametrize(
    ("found_on_xywh", "frames", "events"),
    [
        # Found again after a 6-frame coast on a blob a tenth of the bus: a piece of
        # something else past the line (a rider's wheel), not the bus.
        ((106.0, 50.0, 12.0, 20.0), 6, 0),
        # The same blob one missed frame later: the bus's front, the rest lost on paint.
        ((106.0, 50.0, 12.0, 20.0), 2, 1),
        # Found whole after the long coast.
        ((100.0, 20.0, 24.0, 100.0), 6, 1),
    ],
)
def test_a_long_coast_found_again_on_a_piece_is_no_crossing(
    found_on_xywh: BoxXYWH, frames: int, events: int
) -> None:
    rule = RedLightRule(line_xy=((50.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    found = TrackView(
        track_id=1,
        box_xywh=found_on_xywh,
        size_wh=(24.0, 100.0),
        hits=30,
        established=True,
        coasting=False,
        last_move=Move(from_box_xywh=BUS_AT[10], to_box_xywh=found_on_xywh, frames=frames),
        stay=None,
    )
    rule.observe(found, frame=16, ts_ms=1600)
    assert len(rule.judge(timeline([LightState.RED] * 20))) == events


@pytest.mark.parametrize(
    ("vehicle_width_px", "events"),
    [
        (10.0, 0),  # a queue five riders across moves up as one blob: no one vehicle crossed
        (30.0, 1),  # the same box where vehicles are 30 px wide: a vehicle and a half
        (None, 1),  # no width learnt yet: judged by the box alone
    ],
)
def test_a_blob_of_several_vehicles_abreast_makes_no_crossing(
    vehicle_width_px: float | None, events: int
) -> None:
    rule = RedLightRule(line_xy=((0.0, 100.0), (200.0, 100.0)), travel_direction=(0, -1))
    queue = TrackView(
        track_id=1,
        box_xywh=(40.0, 70.0, 60.0, 50.0),
        size_wh=(60.0, 50.0),
        hits=30,
        established=True,
        coasting=False,
        last_move=Move(
            from_box_xywh=(40.0, 80.0, 60.0, 50.0), to_box_xywh=(40.0, 70.0, 60.0, 50.0), frames=1
        ),
        stay=None,
    )
    rule.observe(queue, frame=16, ts_ms=1600, vehicle_width_px=vehicle_width_px)
    assert len(rule.judge(timeline([LightState.RED] * 20))) == events
