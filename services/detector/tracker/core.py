"""The tracker's update loop: blobs in, tracks with stable ids out, one frame at a time.

Each track also knows whether it has *moved* (or arrived): a vehicle drives in, whereas a
ghost of the first frames never travels (see ``ghosts``). Rules and the background freeze
use only tracks that have moved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common.arrays import PointXY
from services.common.boxes import BoxXYWH, box_centre, box_intersection, box_iou, covered_fraction
from services.detector.geometry import distance, grown_box, union_box
from services.detector.tracker.association import (
    FillFn,
    greedy_matches,
    hidden_in_merges,
    join_fragments,
)
from services.detector.tracker.departures import TRAIL_COVER, departing_box, may_be_trail
from services.detector.tracker.ghosts import Ghosts, LeftPlace, Released
from services.detector.tracker.sizes import VehicleWidths, parted, vehicle_shaped
from services.detector.tracker.standing import StandingRegion
from services.detector.tracker.track import (
    MIN_HITS,
    Sample,
    Stay,
    Track,
    TrackView,
    complete_part,
    holds_still,
    is_merge,
    same_place,
    still_since,
)

# A standing region that overlaps a track's box this much (IoU) is that track's vehicle.
STANDING_IOU = 0.4
# A track's box within this many pixels of the frame's edge is at the edge.
EDGE_PX = 2.0
# A blob overlapping a track's predicted box less than this (IoU) was matched by nearness.
REACQUIRED_IOU = 0.1
# A blob that this much of lies inside a live track's box is part of that vehicle, not a
# new one.
INSIDE_TRACK = 0.5


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Distances are in working pixels, times in seconds."""

    max_missed_s: float = 1.5
    stationary_window_s: float = 1.0
    stationary_tol_px: float = 2.5
    moved_px: float = 12.0
    startup_s: float = 3.0


class Tracker:
    """Assigns blobs to tracks frame by frame; call :meth:`update` once per frame."""

    def __init__(
        self,
        *,
        fps: float,
        settings: TrackerSettings | None = None,
        frame_wh: tuple[int, int] | None = None,
        parking_zone: Callable[[PointXY], bool] | None = None,
    ) -> None:
        """``frame_wh`` (working pixels) lets new tracks follow vehicles that leave a place
        the background learnt them in (see ``departures``); without it they are not looked
        for. ``parking_zone`` tells whether a point (working pixels) is in a no-parking
        zone, where a vehicle seen parking is never taken for a ghost (see ``ghosts``)."""
        self._settings = settings or TrackerSettings()
        self._frame_wh = frame_wh
        # Places vehicles have left this frame, where the background should learn the road.
        self._vacated: list[BoxXYWH] = []
        self._max_missed = max(1, round(fps * self._settings.max_missed_s))
        self._window_ms = self._settings.stationary_window_s * 1000.0
        self._tracks: list[Track] = []
        self._next_id = 1
        self._ghosts = Ghosts(
            startup_frames=round(fps * self._settings.startup_s),
            travelled_px=self._settings.moved_px,
            parking_zone=parking_zone,
        )
        self._widths = VehicleWidths()
        self._vehicle_width_px: float | None = None

    @property
    def tracks(self) -> list[TrackView]:
        """Every live track as it stands now."""
        return [t.view() for t in self._tracks]

    @property
    def vehicle_width_px(self) -> float | None:
        """The width of a vehicle as learnt so far (None until enough were seen whole)."""
        return self._vehicle_width_px

    def update(
        self, boxes: list[BoxXYWH], *, frame: int, ts_ms: int, fill: FillFn | None = None
    ) -> list[TrackView]:
        """Associate this frame's blobs; returns the tracks that are still alive.

        ``fill`` gives the foreground fraction of a box; without it, a blob is taken to fill
        its bounding box.
        """
        self._ghosts.see(frame)
        predictions = {t.track_id: t.predicted(frame) for t in self._tracks}
        # Once a frame: a median of the width samples takes a few microseconds.
        self._vehicle_width_px = self._widths.width_px()
        blobs = join_fragments(
            boxes, self._tracks, predictions, vehicle_width_px=self._vehicle_width_px
        )
        boxes = blobs.boxes_xywh
        unmatched = set(range(len(boxes)))
        updated: set[int] = set()

        for i, hidden in hidden_in_merges(boxes, self._tracks, predictions, fill=fill):
            unmatched.discard(i)
            for track in hidden:
                track.coast(predictions[track.track_id], frame=frame)
                updated.add(track.track_id)

        free = [t for t in self._tracks if t.track_id not in updated]
        for track, i in greedy_matches(free, predictions, {i: boxes[i] for i in unmatched}):
            unmatched.discard(i)
            if self._came_in_where_it_left(track, predictions[track.track_id], boxes[i]):
                track.rename(self._next_id)
                self._next_id += 1
            updated.add(track.track_id)
            self._observe(track, boxes[i], frame=frame, ts_ms=ts_ms, whole=i not in blobs.joined)

        for track in self._tracks:
            if track.track_id not in updated:
                track.misses += 1
                track.coast(predictions[track.track_id], frame=frame, missed=True)
        self._tracks = [t for t in self._tracks if t.misses <= self._max_missed]

        for i in sorted(unmatched):
            if not any(covered_fraction(boxes[i], t.box) > INSIDE_TRACK for t in self._tracks):
                self._start(boxes[i], frame=frame, ts_ms=ts_ms)
        return self.tracks

    def _came_in_where_it_left(self, track: Track, predicted: BoxXYWH, box: BoxXYWH) -> bool:
        """Whether ``box``, matched to a track that missed its blob at the frame's edge as
        it drove out over it, is another vehicle coming in there.

        The box of a vehicle whose blob shrank as it left stands still at the edge, and may
        be a bus length long, so the centre of the next vehicle to come in there, in the
        next lane, is near it (or its predicted box, mostly out of the picture by then,
        still grazes the newcomer's). The match keeps the track's motion (matching is unchanged),
        but the newcomer gets an id of its own: under the old one, its violations would
        count as repeats of the vehicle that left.
        """
        if self._frame_wh is None or track.misses == 0 or track.stationary:
            return False
        if box_iou(predicted, box) >= REACQUIRED_IOU:
            return False
        x, y, w, h = track.box
        vx, vy = track.velocity
        width, height = self._frame_wh
        return (
            (x < EDGE_PX and vx < 0)
            or (x + w > width - EDGE_PX and vx > 0)
            or (y < EDGE_PX and vy < 0)
            or (y + h > height - EDGE_PX and vy > 0)
        )

    def release_ghosts(self, *, looks_like_ghost: Callable[[BoxXYWH], bool]) -> Released:
        """Drop the standing tracks that hold a ghost, and say where the background should
        learn the road back and which places vehicles left that had stood there from the
        first frames.

        A track standing on a ghost would freeze it there for good (and swallow every
        vehicle that passes through it). ``looks_like_ghost`` tells whether this frame
        shows road where a box stands.
        """
        ghosts = self._ghosts.confirmed(
            self._tracks,
            looks_like_ghost=looks_like_ghost,
            vehicle_width_px=self._vehicle_width_px,
        )
        self._tracks = [t for t in self._tracks if t not in ghosts]
        vacated, self._vacated = self._vacated, []
        return Released(
            relearn_xywh=[t.box for t in ghosts] + vacated,
            left_places=[place for ghost in ghosts if (place := self._left(ghost)) is not None],
        )

    def _left(self, ghost: Track) -> LeftPlace | None:
        """The place a vehicle stood in from the first frames, if the ghost is where it
        was seen to leave: a track of a vehicle that set off from there (its first blob
        within half a vehicle's width of the ghost, and no later) and has moved away.

        Without that vehicle, a ghost is only evidence that the background once held
        something there (a car passing in the first frames leaves one too, at once). The
        vehicle's first blob and its ghost may each be only part of the place (the front
        pulling out, the road showing through in pieces): the place is the two together.
        """
        near: list[Track] = []
        for track in self._tracks:
            if not track.moved or track.stay is not None or track.first_frame > ghost.first_frame:
                continue
            # Half a vehicle's width (the track's own, until the camera's is learnt).
            half = (self._vehicle_width_px or min(track.size_wh)) / 2
            if box_intersection(
                track.first_box, grown_box(ghost.box, margin_x=half, margin_y=half)
            ):
                near.append(track)
        if not near:
            return None
        leaver = min(near, key=lambda t: t.first_frame)
        return LeftPlace(
            track_id=ghost.track_id,
            box_xywh=union_box([ghost.box, leaver.first_box]),
            left_frame=leaver.first_frame,
        )

    def adopt_standing(self, regions: Sequence[StandingRegion], *, frame: int) -> list[TrackView]:
        """Start a standing track for each standing region no track accounts for; returns
        the new tracks.

        A region neither held by a standing track nor about to be by a track of about its
        size and place is a vehicle that has stood since the region's ``since_frame``.
        Regions that have stood since the start-up seconds may be ghosts, and are left.
        """
        adopted: list[TrackView] = []
        for region in regions:
            if not self._ghosts.arrived(region.since_frame):
                continue
            box = region.box_xywh
            if any(
                (box_iou(track.box, box) >= STANDING_IOU and not track.coasting)
                or (
                    track.stationary
                    and same_place(track.box, box)
                    and (
                        not is_merge(box, track.box)
                        or self._ghosts.parked(track, vehicle_width_px=self._vehicle_width_px)
                    )
                )
                for track in self._tracks
            ):
                # A standing track holds it, or a seen track of its size is about to; a
                # standing track of a merged blob holding it and more does not count, but
                # one vehicle parked in a zone does: the region is a piece of it.
                continue
            track = self._new_track(box, frame=frame)
            track.hits = MIN_HITS
            track.moved = True
            track.stay = Stay(
                anchor_xy=box_centre(box),
                since_frame=region.since_frame,
                since_ts_ms=region.since_ts_ms,
            )
            adopted.append(track.view())
        return adopted

    def _start(self, box: BoxXYWH, *, frame: int, ts_ms: int) -> None:
        track = self._new_track(box, frame=frame)
        track.moved = self._ghosts.arrived(frame)
        if (
            self._frame_wh is not None
            and self._ghosts.learnt_then(frame)
            and may_be_trail(box, frame_wh=self._frame_wh)
        ):
            track.trail = box
        track.samples.append(Sample(frame=frame, ts_ms=ts_ms, centre=track.origin))

    def _new_track(self, box: BoxXYWH, *, frame: int) -> Track:
        """Register a track first seen at ``box`` in ``frame``."""
        track = Track(
            track_id=self._next_id,
            box=box,
            first_box=box,
            first_frame=frame,
            last_frame=frame,
            size_wh=(box[2], box[3]),
        )
        self._next_id += 1
        self._tracks.append(track)
        return track

    def _observe(
        self, track: Track, box: BoxXYWH, *, frame: int, ts_ms: int, whole: bool = True
    ) -> None:
        settings = self._settings
        box = self._leave_trail(track, box)
        vehicle_width = self._vehicle_width_px if whole else None
        if vehicle_width is not None and parted(
            track.size_wh, (box[2], box[3]), vehicle_width_px=vehicle_width
        ):
            # The track followed vehicles side by side, and they have parted: it follows
            # this one now, at its own size (the other starts a track of its own).
            track.size_wh = (box[2], box[3])
        box, whole = complete_part(track, box, frame=frame, whole=whole)
        if whole:
            track.size_wh = (
                0.7 * track.size_wh[0] + 0.3 * box[2],
                0.7 * track.size_wh[1] + 0.3 * box[3],
            )
            if track.hits >= MIN_HITS and not track.stationary and vehicle_shaped((box[2], box[3])):
                self._widths.add((box[2], box[3]))
        if holds_still(track, box, tolerance_px=3 * settings.stationary_tol_px):
            # A standing vehicle keeps the box it stopped with: its blob flickers as fragments
            # join and part (a faint body, a car passing close), but the vehicle has not moved.
            track.coast(track.box, frame=frame)
            track.observed(frame=frame)
            track.velocity = (0.0, 0.0)
            track.hits += 1
            return
        previous = track.centre
        steps = max(frame - track.last_frame, 1)
        track.box = box
        track.observed(frame=frame)
        centre = track.centre
        track.velocity = (
            0.5 * track.velocity[0] + 0.5 * (centre[0] - previous[0]) / steps,
            0.5 * track.velocity[1] + 0.5 * (centre[1] - previous[1]) / steps,
        )
        track.last_frame = frame
        track.hits += 1
        track.misses = 0
        if not track.moved and distance(centre, track.origin) > settings.moved_px:
            track.moved = True

        track.samples.append(Sample(frame=frame, ts_ms=ts_ms, centre=centre))
        while track.samples and ts_ms - track.samples[0].ts_ms > self._window_ms:
            track.samples.popleft()
        self._settle(track)

    def _leave_trail(self, track: Track, box: BoxXYWH) -> BoxXYWH:
        """The vehicle's box in a blob that may also hold the place it left."""
        trail = track.trail
        if trail is None:
            return box
        vehicle = departing_box(trail, box)
        if vehicle is not None:
            track.left_trail = True
            return vehicle
        if track.left_trail and covered_fraction(trail, box) >= TRAIL_COVER:
            # The blob is the place alone again: the vehicle has gone (out of the frame, or
            # behind something) and what is left is the road the background still holds it
            # on, a ghost.
            track.trail = None
            self._vacated.append(trail)
        elif covered_fraction(trail, box) < TRAIL_COVER:
            track.trail = None
            if track.left_trail and box_intersection(trail, box) == 0:
                # It has parted from the place it left: the road there is the background.
                self._vacated.append(trail)
        return box

    def _settle(self, track: Track) -> None:
        """Start the track's stay once it has stood still for the stationary window."""
        first = still_since(
            track, window_ms=self._window_ms, tolerance_px=self._settings.stationary_tol_px
        )
        if first is None:
            return
        if any(
            other is not track and other.stationary and same_place(other.box, track.box)
            for other in self._tracks
        ):
            # Another track already stands here (one adopted from the persistent foreground
            # while this one was following a merged blob): the same vehicle.
            track.misses = self._max_missed + 1
            return
        track.stay = Stay(anchor_xy=track.centre, since_frame=first.frame, since_ts_ms=first.ts_ms)
