"""One vehicle's track: its mutable state inside the tracker, and the frozen view of it
that everyone else reads.

A standing track holds the box it stopped with until observations sit well away from it for
a few frames running, so a flickering mask neither moves it nor restarts its dwell clock.
The rules see only observed moves: a move coasted through a merge is a guess.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from services.common.arrays import PointXY
from services.common.boxes import BoxXYWH, box_centre, box_intersection, covered_fraction
from services.detector.geometry import distance, grown_box

# Observations before a track may claim a shared blob or count as a vehicle: one-frame noise
# blobs never get there.
MIN_HITS = 3
# Consecutive observations away from where a standing track stopped before it counts as moving.
LEAVE_FRAMES = 3
# Consecutive frames a moving vehicle's box may be completed from a partial blob.
PARTIAL_FRAMES = 5
# A blob holding this much of a standing vehicle's box, and this many times its area, is the
# vehicle merged with something else, not the vehicle moving.
MERGE_COVER = 0.9
MERGE_GROWTH = 2.0


@dataclass(frozen=True, slots=True)
class Stay:
    """Where a vehicle stands still, and since when (its first still sample)."""

    anchor_xy: PointXY
    since_frame: int
    since_ts_ms: int


@dataclass(frozen=True, slots=True)
class Move:
    """A track's last observed move: the boxes of its last two real observations, and the
    frames between them."""

    from_box_xywh: BoxXYWH
    to_box_xywh: BoxXYWH
    frames: int


@dataclass(frozen=True, slots=True)
class TrackView:
    """One track as it stands after a frame, in working pixels; what rules, the pipeline
    and its callers read. ``coasting`` means the box is a prediction, not this frame's blob."""

    track_id: int
    box_xywh: BoxXYWH
    # The vehicle's size as seen in whole blobs, smoothed (a blob may show only part of it).
    size_wh: tuple[float, float]
    hits: int
    established: bool
    coasting: bool
    last_move: Move | None
    stay: Stay | None

    @property
    def stationary(self) -> bool:
        return self.stay is not None


@dataclass(frozen=True, slots=True)
class Sample:
    frame: int
    ts_ms: int
    centre: PointXY


@dataclass(frozen=True, slots=True)
class _Observation:
    frame: int
    box_xywh: BoxXYWH


@dataclass(eq=False)
class Track:
    """One vehicle's state inside the tracker; ``box`` is in working pixels."""

    track_id: int
    box: BoxXYWH
    # The blob the track was first seen on, in ``first_frame``.
    first_box: BoxXYWH
    first_frame: int
    last_frame: int
    # The vehicle's size as seen in whole (not rejoined) blobs, smoothed.
    size_wh: tuple[float, float]
    velocity: PointXY = (0.0, 0.0)
    hits: int = 1
    misses: int = 0
    # Seen travelling (or arrived after the start-up seconds): no ghost of the first frames.
    moved: bool = False
    coasting: bool = False
    stay: Stay | None = None
    # Consecutive observations away from where the track stands.
    departing: int = 0
    # Consecutive observations that showed only part of the (moving) vehicle.
    partial: int = 0
    # The first box, while the track may be a vehicle leaving a place the background learnt
    # it in (see ``departures``), and whether it has been seen leaving.
    trail: BoxXYWH | None = None
    left_trail: bool = False
    # The last two real observations: coasting through a merge is a guess, and a rule must
    # not see a guessed move as a crossing.
    observations: deque[_Observation] = field(default_factory=lambda: deque(maxlen=2))
    samples: deque[Sample] = field(default_factory=deque)

    @property
    def centre(self) -> PointXY:
        return box_centre(self.box)

    @property
    def origin(self) -> PointXY:
        """Where the track was first seen (its first blob's centre)."""
        return box_centre(self.first_box)

    def rename(self, track_id: int) -> None:
        """Carry on as another vehicle: under ``track_id``, with nothing kept of what was
        seen of the one before (no move to cross a line with, no samples to date a stay)."""
        self.track_id = track_id
        self.observations.clear()
        self.samples.clear()

    @property
    def stationary(self) -> bool:
        return self.stay is not None

    @property
    def established(self) -> bool:
        """A real vehicle: seen several times and seen travelling."""
        return self.moved and self.hits >= MIN_HITS

    def predicted(self, frame: int) -> BoxXYWH:
        steps = frame - self.last_frame
        x, y, w, h = self.box
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, w, h)

    def coast(self, box: BoxXYWH, *, frame: int, missed: bool = False) -> None:
        """Move the track to ``box`` without evidence from this frame."""
        self.coasting = True
        self.box = box
        self.last_frame = frame
        if not missed:
            self.misses = 0

    def observed(self, *, frame: int) -> None:
        """Record the current box as this frame's real observation."""
        self.coasting = False
        self.observations.append(_Observation(frame=frame, box_xywh=self.box))

    def view(self) -> TrackView:
        move = None
        if len(self.observations) == 2:
            before, latest = self.observations
            move = Move(
                from_box_xywh=before.box_xywh,
                to_box_xywh=latest.box_xywh,
                frames=latest.frame - before.frame,
            )
        return TrackView(
            track_id=self.track_id,
            box_xywh=self.box,
            size_wh=self.size_wh,
            hits=self.hits,
            established=self.established,
            coasting=self.coasting,
            last_move=move,
            stay=self.stay,
        )


def holds_still(track: Track, box: BoxXYWH, *, tolerance_px: float) -> bool:
    """Whether a standing track stays put for this observation (ends its stay if not).

    Hysteresis: jitter of a standing car must not end its stay (and restart the clock),
    so only an observation well away from the anchor, several frames running, does.
    """
    if track.stay is None:
        return False
    if is_merge(track.box, box):
        # The standing vehicle is all there, joined by something passing close (a car
        # in the next lane, its headlight beam): that is no move of its own.
        return True
    if distance(box_centre(box), track.stay.anchor_xy) <= tolerance_px:
        track.departing = 0
        return True
    track.departing += 1
    if track.departing < LEAVE_FRAMES:
        return True
    track.stay = None
    track.departing = 0
    track.samples.clear()
    return False


def complete_part(track: Track, box: BoxXYWH, *, frame: int, whole: bool) -> tuple[BoxXYWH, bool]:
    """The whole vehicle's box for a blob that shows only part of a moving vehicle.

    Over paint of its own grey (a zebra crossing beyond the stop line) part of a vehicle
    vanishes from the mask, and the centre of what is left lags behind the vehicle or even
    moves backwards. While the blob is much smaller than the vehicle and lies where the
    vehicle is expected, the vehicle's box is its predicted one, moved just enough to hold
    the blob; for a few frames at most, since a vehicle may also really part from one it
    was merged with. Returns the box and whether the blob showed it whole.
    """
    width, height = track.size_wh
    speed = math.hypot(*track.velocity)
    if (
        track.stationary
        or track.hits < MIN_HITS
        or speed < 1.0
        or track.partial >= PARTIAL_FRAMES
        or (box[2] >= 0.7 * width and box[3] >= 0.7 * height)
    ):
        track.partial = 0
        return box, whole
    px, py, pw, ph = track.predicted(frame)
    cx, cy = px + pw / 2, py + ph / 2
    expected = (cx - width / 2, cy - height / 2, width, height)
    if covered_fraction(box, grown_box(expected, margin_x=2.0, margin_y=2.0)) < 0.8:
        track.partial = 0
        return box, whole
    track.partial += 1
    x = min(max(expected[0], box[0] + box[2] - width), box[0])
    y = min(max(expected[1], box[1] + box[3] - height), box[1])
    return (x, y, width, height), False


def still_since(track: Track, *, window_ms: float, tolerance_px: float) -> Sample | None:
    """The first sample of a full window in which the track's centre stayed within
    ``tolerance_px`` of where it is now, or None while it moves (or the window is short)."""
    first = track.samples[0]
    if (track.samples[-1].ts_ms - first.ts_ms) < window_ms * 0.9:
        return None
    centre = track.centre
    if all(distance(s.centre, centre) <= tolerance_px for s in track.samples):
        return first
    return None


def same_place(a: BoxXYWH, b: BoxXYWH) -> bool:
    """Whether two boxes share a good part of the smaller one.

    >>> same_place((0, 0, 10, 10), (6, 0, 10, 10)), same_place((0, 0, 10, 10), (8, 0, 10, 10))
    (True, False)
    """
    return box_intersection(a, b) > 0.3 * min(a[2] * a[3], b[2] * b[3])


def is_merge(own: BoxXYWH, observed: BoxXYWH) -> bool:
    """Whether ``observed`` holds all of ``own`` and a good deal more besides.

    >>> is_merge((0, 0, 10, 10), (0, 0, 30, 10)), is_merge((0, 0, 10, 10), (0, 0, 12, 10))
    (True, False)
    """
    return (
        covered_fraction(own, observed) > MERGE_COVER
        and observed[2] * observed[3] > MERGE_GROWTH * own[2] * own[3]
    )
