"""The one place that decides what may be, and what is, a ghost.

A vehicle that stands in the very first frames is learnt into the background; when it
drives off, the road it uncovers shows up as foreground shaped like that vehicle: a ghost.
Only the first frames can leave one: from then on the background never learns where a
vehicle stands. So a blob first seen after the start-up seconds is a vehicle that arrived,
while one seen earlier counts as a vehicle only once it travels; and a track that stands on
road that looks as the background held it before is a ghost once it has looked so for a few
frames running, unless it is a vehicle seen parking in a no-parking zone (see
:meth:`Ghosts.confirmed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.common.arrays import PointXY
from services.common.boxes import BoxXYWH
from services.detector.geometry import distance
from services.detector.tracker.sizes import SIDE_BY_SIDE_WIDTHS, vehicles_across
from services.detector.tracker.track import Track

# A standing track must look like a ghost this many frames running before it is dropped.
GHOST_FRAMES = 5


@dataclass(frozen=True, slots=True)
class LeftPlace:
    """Where a vehicle that stood from the first frames was, found by the ghost it left:
    the ghost track's id and box, and the frame the vehicle was first seen leaving."""

    track_id: int
    box_xywh: BoxXYWH
    left_frame: int


@dataclass(frozen=True, slots=True)
class Released:
    """What a release of ghosts leaves to do: boxes where the background should learn the
    road back, and the places left by vehicles that had stood there from the first frames."""

    relearn_xywh: list[BoxXYWH]
    left_places: list[LeftPlace]


class Ghosts:
    """Start-up window and ghost evidence for one camera's tracks."""

    def __init__(
        self,
        *,
        startup_frames: int,
        travelled_px: float,
        parking_zone: Callable[[PointXY], bool] | None = None,
    ) -> None:
        self._startup_frames = startup_frames
        self._travelled_px = travelled_px
        self._parking_zone = parking_zone
        self._first_frame: int | None = None
        # Consecutive frames each standing track has looked like a ghost.
        self._looked: dict[int, int] = {}

    def see(self, frame: int) -> None:
        """Note a frame; the first one starts the start-up window."""
        if self._first_frame is None:
            self._first_frame = frame

    def arrived(self, frame: int) -> bool:
        """Whether a blob first seen at ``frame`` came into the scene rather than being left
        over from the start.

        A vehicle that shows up after the start-up seconds arrived, even if its track did
        not see it travel (it drove in merged with another vehicle's blob, then parted).

        >>> ghosts = Ghosts(startup_frames=30, travelled_px=12); ghosts.see(100)
        >>> ghosts.arrived(110), ghosts.arrived(130)
        (False, True)
        """
        return frame - (self._first_frame or 0) >= self._startup_frames

    def learnt_then(self, frame: int) -> bool:
        """Whether a blob first seen at ``frame`` may be a vehicle leaving a place the
        background learnt it in: one that stood in the start-up seconds and left within as
        long again (a queue at red moving off). Later, a blob that grows from a fixed edge is
        something else (a car pulling in beside another, a headlight beam), and a vehicle that
        stood from the start and leaves later is left to the ghost evidence.

        >>> ghosts = Ghosts(startup_frames=30, travelled_px=12); ghosts.see(100)
        >>> ghosts.learnt_then(159), ghosts.learnt_then(160)
        (True, False)
        """
        return frame - (self._first_frame or 0) < 2 * self._startup_frames

    def confirmed(
        self,
        tracks: Iterable[Track],
        *,
        looks_like_ghost: Callable[[BoxXYWH], bool],
        vehicle_width_px: float | None,
    ) -> list[Track]:
        """The standing tracks that have looked like a ghost for ``GHOST_FRAMES`` running.

        ``looks_like_ghost`` tells whether this frame shows road where a box stands. It is
        not asked for one vehicle (less than ``SIDE_BY_SIDE_WIDTHS`` of the camera's
        ``vehicle_width_px`` across) that drove into a no-parking zone and stands there.
        Zones are often hatched, and a grey car on grey hatching shows in the mask only as
        its windows, ends and shadow: the outline they span crosses hatching that the
        background holds and the car hides, and the edge vote takes the car for a ghost
        (at 1280x720 it did for most cars parking on ``hangzhou-cam-04``'s zones). Released,
        the car would be learnt into the background and its stay never timed, and once it
        left, the road it uncovered would be a real ghost that the same vote never
        releases. Outside the zones a stay is not timed, and the vote stays the way out
        for a standing track that traffic keeps feeding (a queue's cars replacing each
        other on a shaking camera) while the patch it freezes goes stale; a box two
        vehicles across may be a vehicle that drove into a ghost and merged with it.
        """
        ghosts: list[Track] = []
        looked: dict[int, int] = {}
        for track in tracks:
            if (
                track.stay is None
                or self.parked(track, vehicle_width_px=vehicle_width_px)
                or not looks_like_ghost(track.box)
            ):
                continue
            count = self._looked.get(track.track_id, 0) + 1
            if count < GHOST_FRAMES:
                looked[track.track_id] = count
            else:
                ghosts.append(track)
        # Counts run only while a track looks like a ghost frame after frame.
        self._looked = looked
        return ghosts

    def parked(self, track: Track, *, vehicle_width_px: float | None) -> bool:
        """Whether a standing track is one vehicle that drove into a no-parking zone."""
        return track.stay is not None and (
            self._parking_zone is not None
            and vehicle_width_px is not None
            and self._parking_zone(track.stay.anchor_xy)
            and distance(track.stay.anchor_xy, track.origin) > self._travelled_px
            and vehicles_across(track.box[2:], vehicle_width_px=vehicle_width_px)
            < SIDE_BY_SIDE_WIDTHS
        )
