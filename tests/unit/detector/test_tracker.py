"""Tracker behaviour on hand-made blob sequences (working pixels, 10 fps)."""

from __future__ import annotations

import pytest

from services.common.boxes import BoxXYWH
from services.detector.tracker import StandingRegions, Tracker, TrackerSettings, side_by_side

FPS = 10


def step(tracker: Tracker, frame: int, boxes: list[BoxXYWH], *, fill: float | None = None) -> None:
    tracker.update(
        boxes,
        frame=frame,
        ts_ms=frame * 100,
        fill=None if fill is None else (lambda _box: fill),
    )


def test_piece_of_a_vehicle_ahead_of_its_lagging_track_is_joined() -> None:
    """A bus (16x52) drives up over paint of its own grey (y 80 to 87): the part on the paint
    drops out of the mask, so the track's blob shrinks to the part behind the paint, and the
    front comes back as a separate piece beyond it. The pieces are one vehicle."""
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0))
    for frame in range(20):
        top = 140.0 - 5 * frame
        bottom = top + 52
        if top >= 87:
            pieces = [(160.0, top, 16.0, 52.0)]
        else:
            pieces = [(160.0, 87.0, 16.0, bottom - 87.0)]
            if 80 - top >= 8:
                pieces.append((160.0, top, 16.0, 80.0 - top))
        step(tracker, frame, pieces)
        (bus,) = tracker.tracks
        assert bus.track_id == 1
        assert bus.box_xywh[1] <= max(top, 87.0)


def parked_pair(*, fill: float) -> Tracker:
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0))
    left, right = (100.0, 100.0, 30.0, 14.0), (140.0, 100.0, 30.0, 14.0)
    for frame in range(20):
        step(tracker, frame, [left, right])
    # One long blob spans both places (a kerb line lit up by a shaken frame, say).
    for frame in range(20, 60):
        step(tracker, frame, [(95.0, 98.0, 80.0, 18.0)], fill=fill)
    return tracker


def test_tracks_hidden_in_a_merged_blob_live_on_while_their_pixels_are_there() -> None:
    assert len(parked_pair(fill=0.8).tracks) == 2


def test_tracks_whose_place_is_empty_inside_a_merged_blob_end() -> None:
    """A blob's bounding box spanning a vehicle's place is no sign of the vehicle if the
    mask there is empty: it may have left."""
    assert len(parked_pair(fill=0.05).tracks) == 1


def settle(
    tracker: Tracker,
    regions: StandingRegions,
    frames: range,
    *,
    region: BoxXYWH,
    merged: BoxXYWH,
) -> None:
    """Frames where the persistent foreground holds ``region`` while the mask's only blob is
    ``merged`` (the region and the traffic beside it)."""
    for frame in frames:
        step(tracker, frame, [merged])
        tracker.adopt_standing(
            regions.update([region], since_frame=frame - FPS, since_ts_ms=(frame - FPS) * 100),
            frame=frame,
        )


def test_vehicle_standing_inside_a_merged_blob_gets_a_standing_track() -> None:
    """A car stops beside a queue; the mask's blob is the car and the queue together, and its
    track follows the queue. Its place in the persistent foreground stands for it."""
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0))
    car = (120.0, 106.0, 30.0, 14.0)
    for frame in range(0, 10):
        step(tracker, frame, [(40.0 + 8 * frame, 100.0, 60.0, 30.0)])
    settle(tracker, StandingRegions(), range(10, 30), region=car, merged=(100.0, 95.0, 70.0, 30.0))
    standing = [t for t in tracker.tracks if t.stationary]
    assert [t.box_xywh for t in standing] == [car]
    # It stood from the window before the region first showed, and settled: since frame 0.
    assert standing[0].stay is not None
    assert standing[0].stay.since_frame == 0
    assert standing[0].established


def test_standing_region_while_it_still_grows_or_already_tracked_is_not_adopted() -> None:
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0))
    car = (120.0, 106.0, 30.0, 14.0)
    regions = StandingRegions()
    for frame in range(0, 30):
        step(tracker, frame, [car])
        # The region grows as the car pulls in, then matches the car's own (standing) track.
        region = (120.0, 106.0, min(30.0, 10.0 + frame), 14.0)
        settled = regions.update([region], since_frame=frame, since_ts_ms=frame * 100)
        tracker.adopt_standing(settled, frame=frame)
    assert len(tracker.tracks) == 1


def test_sliver_region_is_not_adopted() -> None:
    """A kerb line lit up by a shaken frame stays put too, but has no vehicle's shape."""
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0))
    sliver = (100.0, 104.0, 40.0, 3.0)
    settle(tracker, StandingRegions(), range(20), region=sliver, merged=(90.0, 95.0, 70.0, 30.0))
    assert all(t.box_xywh != sliver for t in tracker.tracks)


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        ([(0.0, 0.0, 16.0, 35.0), (20.0, 5.0, 16.0, 35.0)], True),  # two cars, two lanes
        ([(0.0, 0.0, 16.0, 20.0), (0.0, 22.0, 16.0, 15.0)], False),  # one broken across paint
        ([(0.0, 0.0, 8.0, 35.0), (9.0, 0.0, 8.0, 35.0)], False),  # one broken along its length
        ([(0.0, 0.0, 16.0, 35.0), (0.0, 40.0, 16.0, 35.0)], False),  # two in one lane
    ],
)
def test_side_by_side_needs_vehicle_wide_pieces_spanning_more_than_one(
    boxes: list[BoxXYWH], expected: bool
) -> None:
    assert side_by_side(boxes, vehicle_width_px=16.0) is expected


def test_vehicles_side_by_side_that_part_get_a_track_each() -> None:
    """Two cars drive in side by side as one blob two lanes wide, then part: once the tracker
    has learnt how wide a vehicle is, the blob's track follows one, and the other gets its
    own instead of being joined back as the first one's lost piece."""
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0))
    for frame in range(30):
        step(tracker, frame, [(60.0, 170.0 - 5 * frame, 16.0, 35.0)])
    for frame in range(30, 40):
        step(tracker, frame, [(140.0, 140.0 - 4 * (frame - 30), 36.0, 35.0)])
    for frame in range(40, 50):
        y = 140.0 - 4 * (frame - 30)
        step(tracker, frame, [(140.0, y, 16.0, 35.0), (160.0, y - 2 * (frame - 40), 16.0, 35.0)])
    pair = [t for t in tracker.tracks if t.established and t.box_xywh[0] >= 130]
    assert sorted(t.box_xywh[0] for t in pair) == [140.0, 160.0]
    assert all(t.size_wh[0] < 20 for t in pair)


def test_vehicle_leaving_the_background_is_followed_at_its_own_size() -> None:
    """A car stood in the first frames, so the background holds it; as it drives up, the road
    it uncovers joins its blob, whose lower edge stays where it stood. The track follows
    the car (the blob's upper part, at the car's size), and once the two part, the place it
    left is handed back as road for the background to learn."""
    tracker = Tracker(fps=FPS, frame_wh=(320, 180))
    stood = (100.0, 100.0, 16.0, 36.0)
    centres = []
    for frame, moved in enumerate((1, 2, 4, 7, 11, 16, 22, 29, 37, 46)):
        blobs: list[BoxXYWH] = [(100.0, 100.0 - moved, 16.0, 36.0 + moved)]
        if moved > 36:
            blobs = [stood, (100.0, 100.0 - moved, 16.0, 36.0)]
        step(tracker, frame, blobs)
        (track, *_) = tracker.tracks
        centres.append(track.box_xywh[1] + track.box_xywh[3] / 2)
        if 7 <= moved <= 36:
            # Its size is that of its first blob, which had it one pixel on its way.
            assert track.box_xywh == (100.0, 100.0 - moved, 16.0, 37.0)
    assert centres[-1] < 118.0 - 36, "the track went with the car, not with the mask's middle"
    assert tracker.release_ghosts(looks_like_ghost=lambda _box: False).relearn_xywh == [
        (100.0, 99.0, 16.0, 37.0)
    ]


def test_vehicle_that_moves_as_a_whole_keeps_its_box() -> None:
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0), frame_wh=(320, 180))
    for frame in range(10):
        step(tracker, frame, [(100.0, 100.0 - 3 * frame, 16.0, 36.0)])
        (track,) = tracker.tracks
        assert track.box_xywh == (100.0, 100.0 - 3 * frame, 16.0, 36.0)


@pytest.mark.parametrize(
    "car",
    [
        (0.0, 60.0, 20.0, 16.0),  # clear of the bus's box, but its centre is near
        (0.0, 55.0, 10.0, 14.0),  # grazing the bus's predicted box, by then mostly outside
    ],
)
def test_vehicle_coming_in_where_one_drove_out_gets_an_id_of_its_own(car: BoxXYWH) -> None:
    """A bus drives out over the left edge; its blob shrinks there, then goes. A car coming
    in over the same edge a frame later, in the next lane, is near the bus's box and takes
    its track, but not its id: with it, the car's violations would count as repeats of the
    bus's."""
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0), frame_wh=(320, 180))
    blobs: list[BoxXYWH] = [(x, 40.0, 80.0, 16.0) for x in (100.0, 80.0, 60.0, 40.0, 20.0)]
    blobs += [(0.0, 40.0, width, 16.0) for width in (80.0, 60.0, 40.0)]
    for frame, blob in enumerate(blobs):
        step(tracker, frame, [blob])
    (bus,) = tracker.tracks
    frame = len(blobs)
    step(tracker, frame, [])
    step(tracker, frame + 1, [car])
    (taken,) = tracker.tracks
    assert taken.track_id != bus.track_id
    assert taken.last_move is None, "the bus's last move is not the car's"


def test_vehicle_standing_at_the_edge_keeps_its_id_through_a_missed_frame() -> None:
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0), frame_wh=(320, 180))
    for frame in range(20):
        step(tracker, frame, [(0.0, 100.0, 30.0, 14.0)])
    (parked,) = tracker.tracks
    assert parked.stationary
    step(tracker, 20, [])
    step(tracker, 21, [(0.0, 101.0, 30.0, 14.0)])
    assert [t.track_id for t in tracker.tracks] == [parked.track_id]


PLACE = (100.0, 100.0, 16.0, 36.0)


@pytest.mark.parametrize("seen_leaving", [True, False])
def test_a_ghost_names_the_place_a_vehicle_left_only_if_one_was_seen_leaving(
    seen_leaving: bool,
) -> None:
    """A car stood at PLACE from the start (the background holds it) and drives up from
    frame 0; the road it uncovers stands there as a ghost from frame 13. Released, the ghost
    names the place and the frame the car was first seen leaving. A ghost with no vehicle
    seen setting off from it names nothing."""
    tracker = Tracker(fps=FPS, settings=TrackerSettings(startup_s=0.0))
    released = []
    for frame in range(40):
        blobs = [(100.0, 100.0 - 3 * frame, 16.0, 36.0)] if seen_leaving else []
        if frame >= 13:
            blobs.append(PLACE)
        step(tracker, frame, blobs)
        released.append(tracker.release_ghosts(looks_like_ghost=lambda box: box == PLACE))
    left = [place for r in released for place in r.left_places]
    assert sum(PLACE in r.relearn_xywh for r in released) == 1, "the ghost is released once"
    if seen_leaving:
        assert [(p.box_xywh, p.left_frame) for p in left] == [(PLACE, 0)]
    else:
        assert left == []


def test_a_piece_of_a_car_parked_in_a_zone_is_not_adopted_as_another() -> None:
    """A car drives along the kerb into a no-parking zone and stands there, whole. Part of
    it (its rear, where it hides the zone's hatching) also stands in the persistent
    foreground: that is the parked car, not a second vehicle with a dwell of its own."""
    tracker = Tracker(
        fps=FPS,
        settings=TrackerSettings(startup_s=0.0),
        parking_zone=lambda xy: 100 <= xy[1] <= 130,
    )
    regions = StandingRegions()
    car, rear = (160.0, 108.0, 40.0, 16.0), (186.0, 109.0, 12.0, 14.0)
    for frame in range(80):
        step(tracker, frame, [(4.0 * frame, 108.0, 40.0, 16.0)] if frame < 40 else [car])
        if frame >= 50:
            tracker.adopt_standing(
                regions.update([rear], since_frame=frame - FPS, since_ts_ms=(frame - FPS) * 100),
                frame=frame,
            )
    assert [t.box_xywh for t in tracker.tracks] == [car]
