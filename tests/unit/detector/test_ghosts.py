"""Which standing tracks the ghost vote may release (services/detector/tracker/ghosts.py)."""

from __future__ import annotations

from services.common.arrays import PointXY
from services.common.boxes import BoxXYWH, box_centre
from services.detector.tracker.ghosts import GHOST_FRAMES, Ghosts
from services.detector.tracker.track import Stay, Track

VEHICLE_WIDTH_PX = 11.0


def standing(track_id: int, *, origin_xy: PointXY, box_xywh: BoxXYWH) -> Track:
    return Track(
        track_id=track_id,
        box=box_xywh,
        first_box=(origin_xy[0] - box_xywh[2] / 2, origin_xy[1] - box_xywh[3] / 2, *box_xywh[2:]),
        first_frame=0,
        last_frame=0,
        size_wh=(box_xywh[2], box_xywh[3]),
        stay=Stay(anchor_xy=box_centre(box_xywh), since_frame=0, since_ts_ms=0),
    )


def released(vehicle_width_px: float | None) -> set[int]:
    # The right half of the picture is a no-parking zone.
    ghosts = Ghosts(startup_frames=0, travelled_px=12.0, parking_zone=lambda xy: xy[0] > 150)
    tracks = [
        # Drove 150 px into the zone and parked: one vehicle across.
        standing(1, origin_xy=(62.5, 100.5), box_xywh=(200.0, 95.0, 25.0, 11.0)),
        # Appeared where it stands: a vehicle learnt at start-up, or the road it uncovered.
        standing(2, origin_xy=(212.5, 120.5), box_xywh=(200.0, 115.0, 25.0, 11.0)),
        # Drove there, but not into a zone, where no stay is timed.
        standing(3, origin_xy=(20.0, 60.5), box_xywh=(100.0, 55.0, 25.0, 11.0)),
        # Drove into the zone, but two vehicles across: it may have merged with a ghost.
        standing(4, origin_xy=(60.0, 150.0), box_xywh=(180.0, 135.0, 60.0, 30.0)),
    ]
    out: list[Track] = []
    for _ in range(GHOST_FRAMES):
        out = ghosts.confirmed(
            tracks, looks_like_ghost=lambda _box: True, vehicle_width_px=vehicle_width_px
        )
    return {track.track_id for track in out}


def test_a_vehicle_that_drove_into_a_parking_zone_is_not_taken_for_a_ghost() -> None:
    assert released(VEHICLE_WIDTH_PX) == {2, 3, 4}


def test_before_the_vehicle_width_is_known_every_standing_track_is_asked() -> None:
    assert released(None) == {1, 2, 3, 4}
