"""Tracker behaviour on hand-made blob sequences (working pixels, 10 fps)."""

from __future__ import annotations

from services.detector.geometry import BoxXYWH
from services.detector.tracker import Tracker, TrackerSettings

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
        assert bus.box[1] <= max(top, 87.0)


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
