"""Multi-object tracking of vehicle blobs with stable ids through stops and occlusions.

Greedy IoU association against constant-velocity predictions. A blob that covers two or more
established tracks (vehicles side by side, or a car passing in front of a parked one) is not
given to either: each coasts on its prediction, so both keep their ids (and a parked car its
position and dwell clock) until the blobs part again.

Each track also knows whether it has *moved* (or arrived): a vehicle drives in, whereas a
ghost of the first frames never travels. A blob first seen after the start-up seconds counts
as arrived, since later on the background never learns a vehicle that could leave a ghost.
Rules and the background freeze use only tracks that have moved.

A standing track holds the box it stopped with until observations sit well away from it for
a few frames running, so a flickering mask neither moves it nor restarts its dwell clock. The
rules see only observed moves: a move coasted through a merge is a guess.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.common.arrays import PointXY
from services.detector.geometry import BoxXYWH, box_centre, box_intersection, box_iou

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
# Even an articulated bus is less than six times as long as it is wide.
MAX_ASPECT = 6.0
# A standing region that overlaps a track's box this much (IoU) is that track's vehicle.
STANDING_IOU = 0.4
# A region of persistent foreground has settled once its box has held (to this IoU) for
# this many frames.
SETTLED_IOU = 0.85
SETTLE_FRAMES = 5
# A track hidden in a merged blob must still have this much of its box in the foreground: a
# blob's bounding box can span a vehicle's place without its pixels being there (a long thin
# blob along a kerb, an L-shaped one round a corner), and the vehicle may have left.
MIN_HIDDEN_FILL = 0.3

# The camera's vehicle width is the median short side of the last WIDTH_SAMPLES vehicles seen
# whole and moving (enough to outvote the odd blob of two), once there are MIN_WIDTH_SAMPLES.
WIDTH_SAMPLES = 100
MIN_WIDTH_SAMPLES = 20
# Boxes that together span this many vehicle widths across, each at least SINGLE_WIDTH of one,
# are vehicles side by side, not the pieces of one vehicle.
SIDE_BY_SIDE_WIDTHS = 1.6
SINGLE_WIDTH = 0.75

# The foreground fraction of a box (0 to 1), from the frame's mask.
FillFn = Callable[[BoxXYWH], float]


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """Distances are in working pixels, times in seconds."""

    max_missed_s: float = 1.5
    stationary_window_s: float = 1.0
    stationary_tol_px: float = 2.5
    moved_px: float = 12.0
    startup_s: float = 3.0


@dataclass(frozen=True, slots=True)
class _Sample:
    frame: int
    ts_ms: int
    centre: PointXY


@dataclass(frozen=True, slots=True)
class _Standing:
    """A region of persistent foreground: its box, the frame and time it has stood since,
    and for how many frames running its box has held."""

    box: BoxXYWH
    frame: int
    ts_ms: int
    settled: int = 0


@dataclass(eq=False)
class Track:
    """One vehicle's state; ``box`` is in working pixels."""

    track_id: int
    box: BoxXYWH
    origin: PointXY
    last_frame: int
    # The vehicle's size as seen in whole (not rejoined) blobs, smoothed.
    size_wh: tuple[float, float]
    velocity: PointXY = (0.0, 0.0)
    hits: int = 1
    misses: int = 0
    moved: bool = False
    # The centre at the last and the one before the last real observation: coasting through a
    # merge is a guess, and a rule must not see a guessed move as a crossing.
    previous_centre: PointXY | None = None
    observed_centre: PointXY | None = None
    # The boxes of those two observations.
    previous_box: BoxXYWH | None = None
    observed_box: BoxXYWH | None = None
    # The frame of the last real observation, and the frames between it and the one before.
    observed_frame: int = 0
    observed_gap: int = 1
    coasting: bool = False
    # Set while the vehicle stands still: where, and since when (the first still sample).
    anchor: PointXY | None = None
    still_since_frame: int = 0
    still_since_ts_ms: int = 0
    departing: int = 0
    # Consecutive observations that showed only part of the (moving) vehicle.
    partial: int = 0
    samples: deque[_Sample] = field(default_factory=deque)

    @property
    def centre(self) -> PointXY:
        return box_centre(self.box)

    @property
    def stationary(self) -> bool:
        return self.anchor is not None

    @property
    def established(self) -> bool:
        """A real vehicle: seen several times and seen travelling."""
        return self.moved and self.hits >= MIN_HITS

    def predicted(self, frame: int) -> BoxXYWH:
        steps = frame - self.last_frame
        x, y, w, h = self.box
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, w, h)


class Tracker:
    """Assigns blobs to tracks frame by frame; call :meth:`update` once per frame."""

    def __init__(self, *, fps: float, settings: TrackerSettings | None = None) -> None:
        self._settings = settings or TrackerSettings()
        self._fps = fps
        self._max_missed = max(1, round(fps * self._settings.max_missed_s))
        self._window_ms = self._settings.stationary_window_s * 1000.0
        self._tracks: list[Track] = []
        self._next_id = 1
        self._first_frame: int | None = None
        # Regions of persistent foreground in the last frame, for adopt_standing.
        self._standing: list[_Standing] = []
        self._startup_frames = round(fps * self._settings.startup_s)
        # Short sides of vehicles seen whole and moving, for the camera's vehicle width.
        self._widths: deque[float] = deque(maxlen=WIDTH_SAMPLES)
        self._vehicle_width_px: float | None = None

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def update(
        self, boxes: list[BoxXYWH], *, frame: int, ts_ms: int, fill: FillFn | None = None
    ) -> list[Track]:
        """Associate this frame's blobs; returns the tracks that are still alive.

        ``fill`` gives the foreground fraction of a box; without it, a blob is taken to fill
        its bounding box.
        """
        if self._first_frame is None:
            self._first_frame = frame
        predictions = {t.track_id: t.predicted(frame) for t in self._tracks}
        # Once a frame: a median of WIDTH_SAMPLES takes a few microseconds.
        self._vehicle_width_px = self._vehicle_width()
        boxes, joined = self._join_fragments(boxes, predictions)
        unmatched = set(range(len(boxes)))
        updated: set[int] = set()

        claimants = [(t, predictions[t.track_id]) for t in self._tracks if t.hits >= MIN_HITS]
        for i in sorted(unmatched):
            covered = [
                t
                for t, prediction in claimants
                if _covered_fraction(prediction, boxes[i]) > 0.6
                and (fill is None or fill(prediction) >= MIN_HIDDEN_FILL)
            ]
            if len(covered) >= 2:
                unmatched.discard(i)
                for track in covered:
                    self._coast(track, predictions[track.track_id], frame=frame)
                    updated.add(track.track_id)

        pairs = sorted(
            (
                (-score, t.track_id, i)
                for t in self._tracks
                if t.track_id not in updated
                for i in unmatched
                if (score := _match_score(predictions[t.track_id], boxes[i])) > 0
            ),
        )
        by_id = {t.track_id: t for t in self._tracks}
        for _, track_id, i in pairs:
            if track_id in updated or i not in unmatched:
                continue
            track = by_id[track_id]
            unmatched.discard(i)
            updated.add(track_id)
            self._observe(track, boxes[i], frame=frame, ts_ms=ts_ms, whole=i not in joined)

        for track in self._tracks:
            if track.track_id not in updated:
                track.misses += 1
                self._coast(track, predictions[track.track_id], frame=frame, missed=True)
        self._tracks = [t for t in self._tracks if t.misses <= self._max_missed]

        for i in sorted(unmatched):
            if not any(_covered_fraction(boxes[i], t.box) > 0.5 for t in self._tracks):
                self._start(boxes[i], frame=frame, ts_ms=ts_ms, moved=self._arrived(frame))
        return list(self._tracks)

    def adopt_standing(
        self,
        boxes: list[BoxXYWH],
        *,
        frame: int,
        since_frame: int,
        since_ts_ms: int,
        where: Callable[[PointXY], bool] | None = None,
    ) -> list[Track]:
        """Start a standing track for each settled region of persistent foreground that no
        track accounts for; returns the new tracks.

        A vehicle that stops while its blob is merged with passing traffic is followed by a
        track of the merged blob, which never stands still; its own place in the mask does.
        A region grows while a vehicle pulls in, so it counts once its box has held for
        ``SETTLE_FRAMES``; then, if shaped like a vehicle and neither held by a standing
        track nor about to be by a track of about its size and place, it is a vehicle that
        has stood since the window before the region was first seen (``since_frame`` then).
        Regions seen in the start-up seconds may be ghosts, and are left, and so are those
        whose centre is not ``where`` a stay matters.
        """
        candidates: list[_Standing] = []
        for box in boxes:
            # A region that grows (a vehicle pulling in) keeps its start; any other change
            # (one vehicle leaving, another arriving) starts it afresh.
            earlier = next(
                (c for c in self._standing if _covered_fraction(c.box, box) > MERGE_COVER), None
            )
            if earlier is None:
                candidates.append(_Standing(box=box, frame=since_frame, ts_ms=since_ts_ms))
                continue
            settled = earlier.settled + 1 if box_iou(earlier.box, box) >= SETTLED_IOU else 0
            candidates.append(
                _Standing(box=box, frame=earlier.frame, ts_ms=earlier.ts_ms, settled=settled)
            )
        self._standing = candidates
        if not self._arrived(frame):
            return []
        adopted: list[Track] = []
        for candidate in candidates:
            box = candidate.box
            if candidate.settled < SETTLE_FRAMES or not vehicle_shaped((box[2], box[3])):
                continue
            if where is not None and not where(box_centre(box)):
                continue
            if any(
                (box_iou(track.box, box) >= STANDING_IOU and not track.coasting)
                or (
                    track.stationary
                    and _same_place(track.box, box)
                    and not _is_merge(box, track.box)
                )
                for track in self._tracks
            ):
                # A standing track holds it, or a seen track of its size is about to; a
                # standing track of a merged blob holding it and more does not count.
                continue
            track = self._new_track(
                box,
                frame=frame,
                hits=MIN_HITS,
                moved=True,
                anchor=box_centre(box),
                still_since_frame=candidate.frame,
                still_since_ts_ms=candidate.ts_ms,
            )
            adopted.append(track)
        return adopted

    def drop(self, track_id: int) -> None:
        """Forget a track (one that turned out to be no vehicle)."""
        self._tracks = [t for t in self._tracks if t.track_id != track_id]

    def _join_fragments(
        self, boxes: list[BoxXYWH], predictions: dict[int, BoxXYWH]
    ) -> tuple[list[BoxXYWH], set[int]]:
        """Reunite the pieces of one moving vehicle whose mask broke apart.

        A vehicle's mask breaks where it passes over paint of its own grey (the stop line,
        above all, where a break would hide the crossing). Pieces that lie within one
        confirmed moving track's prediction, belong to no other track's, and together are
        no bigger than that track's vehicle was seen whole, become one box again. Returns
        the boxes and the indices of the joined ones.
        """
        confirmed = [t for t in self._tracks if t.hits >= MIN_HITS]
        joined = list(boxes)
        made: list[BoxXYWH] = []
        if len(boxes) < 2 or not confirmed:
            return joined, set()
        vehicle_width = self._vehicle_width_px
        for track in sorted(confirmed, key=lambda t: -t.hits):
            if track.stationary:
                continue
            pred = predictions[track.track_id]
            width, height = track.size_wh
            # The track may hold only one piece: the rest of the vehicle lies within its
            # missing length of that piece, on either side.
            margin = max(2.0, 0.15 * max(pred[2], pred[3]))
            reach = _grown(
                pred,
                margin_x=margin + max(0.0, width - pred[2]),
                margin_y=margin + max(0.0, height - pred[3]),
            )
            pieces = [b for b in joined if _covered_fraction(b, reach) > 0.8]
            if len(pieces) < 2:
                continue
            union = _union(pieces)
            if union[2] > 1.2 * width + 2 or union[3] > 1.2 * height + 2:
                continue
            if vehicle_width is not None and side_by_side(pieces, vehicle_width_px=vehicle_width):
                # The track followed vehicles side by side, which have parted.
                continue
            if any(
                _covered_fraction(piece, predictions[other.track_id]) > 0.5
                for piece in pieces
                for other in confirmed
                if other is not track
            ):
                continue
            joined = [b for b in joined if b not in pieces] + [union]
            made.append(union)
        return joined, {i for i, b in enumerate(joined) if b in made}

    def _vehicle_width(self) -> float | None:
        """The camera's vehicle width in working pixels, once enough vehicles were seen."""
        if len(self._widths) < MIN_WIDTH_SAMPLES:
            return None
        return statistics.median(self._widths)

    def _arrived(self, frame: int) -> bool:
        """Whether a blob first seen at ``frame`` came into the scene rather than being left
        over from the start.

        Only the first frames can leave a ghost: from then on the background never learns
        where a vehicle stands. A vehicle that shows up later arrived, even if its track did
        not see it travel (it drove in merged with another vehicle's blob, then parted).
        """
        return frame - (self._first_frame or 0) > self._startup_frames

    def _start(self, box: BoxXYWH, *, frame: int, ts_ms: int, moved: bool) -> None:
        track = self._new_track(box, frame=frame, moved=moved)
        track.samples.append(_Sample(frame=frame, ts_ms=ts_ms, centre=track.origin))

    def _new_track(self, box: BoxXYWH, *, frame: int, **state: Any) -> Track:
        """Register a track first seen at ``box`` in ``frame``; ``state`` sets its other fields."""
        track = Track(
            track_id=self._next_id,
            box=box,
            origin=box_centre(box),
            last_frame=frame,
            size_wh=(box[2], box[3]),
            **state,
        )
        self._next_id += 1
        self._tracks.append(track)
        return track

    def _coast(self, track: Track, box: BoxXYWH, *, frame: int, missed: bool = False) -> None:
        """Move the track along its prediction without evidence from this frame."""
        track.coasting = True
        track.box = box
        track.last_frame = frame
        if not missed:
            track.misses = 0

    def _observe(
        self, track: Track, box: BoxXYWH, *, frame: int, ts_ms: int, whole: bool = True
    ) -> None:
        settings = self._settings
        vehicle_width = self._vehicle_width_px if whole else None
        if (
            vehicle_width is not None
            and vehicles_across(track.size_wh, vehicle_width_px=vehicle_width)
            >= SIDE_BY_SIDE_WIDTHS
            and SINGLE_WIDTH
            <= vehicles_across((box[2], box[3]), vehicle_width_px=vehicle_width)
            < SIDE_BY_SIDE_WIDTHS
        ):
            # The track followed vehicles side by side, and they have parted: it follows
            # this one now, at its own size (the other starts a track of its own).
            track.size_wh = (box[2], box[3])
        box, whole = self._complete_part(track, box, frame=frame, whole=whole)
        if whole:
            track.size_wh = (
                0.7 * track.size_wh[0] + 0.3 * box[2],
                0.7 * track.size_wh[1] + 0.3 * box[3],
            )
            if track.hits >= MIN_HITS and not track.stationary and vehicle_shaped((box[2], box[3])):
                self._widths.append(min(box[2], box[3]))
        if self._holds_still(track, box):
            # A standing vehicle keeps the box it stopped with: its blob flickers as fragments
            # join and part (a faint body, a car passing close), but the vehicle has not moved.
            self._coast(track, track.box, frame=frame)
            self._observed(track, frame=frame)
            track.velocity = (0.0, 0.0)
            track.hits += 1
            return
        previous = track.centre
        steps = max(frame - track.last_frame, 1)
        track.box = box
        self._observed(track, frame=frame)
        centre = track.centre
        track.velocity = (
            0.5 * track.velocity[0] + 0.5 * (centre[0] - previous[0]) / steps,
            0.5 * track.velocity[1] + 0.5 * (centre[1] - previous[1]) / steps,
        )
        track.last_frame = frame
        track.hits += 1
        track.misses = 0
        if not track.moved and _distance(centre, track.origin) > settings.moved_px:
            track.moved = True

        track.samples.append(_Sample(frame=frame, ts_ms=ts_ms, centre=centre))
        while track.samples and ts_ms - track.samples[0].ts_ms > self._window_ms:
            track.samples.popleft()
        self._update_stillness(track, centre)

    @staticmethod
    def _complete_part(
        track: Track, box: BoxXYWH, *, frame: int, whole: bool
    ) -> tuple[BoxXYWH, bool]:
        """The whole vehicle's box for a blob that shows only part of a moving vehicle.

        Over paint of its own grey (a zebra crossing beyond the stop line) part of a vehicle
        vanishes from the mask, and the centre of what is left lags behind the vehicle or
        even moves backwards. While the blob is much smaller than the vehicle and lies where
        the vehicle is expected, the vehicle's box is its predicted one, moved just enough to
        hold the blob; for a few frames at most, since a vehicle may also really part from
        one it was merged with. Returns the box and whether the blob showed it whole.
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
        if _covered_fraction(box, _grown(expected, margin_x=2.0, margin_y=2.0)) < 0.8:
            track.partial = 0
            return box, whole
        track.partial += 1
        x = min(max(expected[0], box[0] + box[2] - width), box[0])
        y = min(max(expected[1], box[1] + box[3] - height), box[1])
        return (x, y, width, height), False

    @staticmethod
    def _observed(track: Track, *, frame: int) -> None:
        track.coasting = False
        track.previous_centre = track.observed_centre
        track.observed_centre = track.centre
        track.previous_box = track.observed_box
        track.observed_box = track.box
        track.observed_gap = frame - track.observed_frame
        track.observed_frame = frame

    def _holds_still(self, track: Track, box: BoxXYWH) -> bool:
        """Whether a standing track stays put for this observation.

        Hysteresis: jitter of a standing car must not end its stay (and restart the clock),
        so only an observation well away from the anchor, several frames running, does.
        """
        if track.anchor is None:
            return False
        if _is_merge(track.box, box):
            # The standing vehicle is all there, joined by something passing close (a car
            # in the next lane, its headlight beam): that is no move of its own.
            return True
        if _distance(box_centre(box), track.anchor) <= 3 * self._settings.stationary_tol_px:
            track.departing = 0
            return True
        track.departing += 1
        if track.departing < LEAVE_FRAMES:
            return True
        track.anchor = None
        track.departing = 0
        track.samples.clear()
        return False

    def _update_stillness(self, track: Track, centre: PointXY) -> None:
        tol = self._settings.stationary_tol_px
        first = track.samples[0]
        if (track.samples[-1].ts_ms - first.ts_ms) < self._window_ms * 0.9:
            return
        if all(_distance(s.centre, centre) <= tol for s in track.samples):
            if any(
                other is not track and other.stationary and _same_place(other.box, track.box)
                for other in self._tracks
            ):
                # Another track already stands here (one adopted from the persistent
                # foreground while this one was following a merged blob): the same vehicle.
                track.misses = self._max_missed + 1
                return
            track.anchor = centre
            track.still_since_frame = first.frame
            track.still_since_ts_ms = first.ts_ms


def vehicle_shaped(size_wh: tuple[float, float]) -> bool:
    """Whether a box of this size has a vehicle's proportions, seen from any side or above.

    >>> vehicle_shaped((12.0, 30.0)), vehicle_shaped((3.0, 25.0))
    (True, False)
    """
    short, long = sorted(size_wh)
    return short > 0 and long <= MAX_ASPECT * short


def vehicles_across(size_wh: tuple[float, float], *, vehicle_width_px: float) -> float:
    """How many vehicle widths a box of this size spans across (its short side).

    >>> vehicles_across((36.0, 45.0), vehicle_width_px=16.0)
    2.25
    """
    return min(size_wh) / vehicle_width_px


def side_by_side(boxes: list[BoxXYWH], *, vehicle_width_px: float) -> bool:
    """Whether the boxes are whole vehicles next to each other rather than pieces of one.

    A vehicle breaks where it passes over paint of its own grey, into pieces narrower than
    a vehicle or lined up along its length; two vehicles side by side make a box that spans
    more than one vehicle across, of pieces each about a vehicle wide.

    >>> side_by_side([(0, 0, 16, 35), (20, 5, 16, 35)], vehicle_width_px=16.0)
    True
    >>> side_by_side([(0, 0, 16, 20), (0, 22, 16, 15)], vehicle_width_px=16.0)
    False
    """
    _, _, width, height = _union(boxes)
    return vehicles_across((width, height), vehicle_width_px=vehicle_width_px) >= (
        SIDE_BY_SIDE_WIDTHS
    ) and all(
        vehicles_across((b[2], b[3]), vehicle_width_px=vehicle_width_px) >= SINGLE_WIDTH
        for b in boxes
    )


def _distance(a: PointXY, b: PointXY) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _covered_fraction(inner: BoxXYWH, outer: BoxXYWH) -> float:
    """How much of ``inner``'s area lies inside ``outer``."""
    area = inner[2] * inner[3]
    return box_intersection(inner, outer) / area if area > 0 else 0.0


def _same_place(a: BoxXYWH, b: BoxXYWH) -> bool:
    """Whether two boxes share a good part of the smaller one."""
    return box_intersection(a, b) > 0.3 * min(a[2] * a[3], b[2] * b[3])


def _is_merge(own: BoxXYWH, observed: BoxXYWH) -> bool:
    """Whether ``observed`` holds all of ``own`` and a good deal more besides."""
    return (
        _covered_fraction(own, observed) > MERGE_COVER
        and observed[2] * observed[3] > MERGE_GROWTH * own[2] * own[3]
    )


def _grown(box: BoxXYWH, *, margin_x: float, margin_y: float) -> BoxXYWH:
    return (box[0] - margin_x, box[1] - margin_y, box[2] + 2 * margin_x, box[3] + 2 * margin_y)


def _union(boxes: list[BoxXYWH]) -> BoxXYWH:
    """The smallest box holding all of ``boxes``."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def _match_score(predicted: BoxXYWH, box: BoxXYWH) -> float:
    """IoU, or for a fast or small vehicle that no longer overlaps, closeness of centres."""
    iou = box_iou(predicted, box)
    if iou > 0:
        return 1.0 + iou
    # Every track is scored against every blob each frame, and most pairs do not overlap:
    # the gate and the centres' distance are written out, with the same arithmetic as
    # max(), box_centre() and _distance() would do.
    px, py, pw, ph = predicted
    bx, by, bw, bh = box
    gate = ph if ph > pw else pw
    distance = math.hypot((px + pw / 2.0) - (bx + bw / 2.0), (py + ph / 2.0) - (by + bh / 2.0))
    return 1.0 - distance / gate if distance < gate else 0.0
