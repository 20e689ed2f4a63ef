"""The contracts' violation rules over tracks, in working-pixel coordinates.

* red_light: the box centre crosses the stop-line segment in ``travel_direction`` while the
  light shows red (amber is not red); at most one event per track; ``frame`` = the crossing.
* illegal_parking: the track stands still with its centre inside a zone for ``max_dwell_s``;
  one event per stay; ``frame`` = the frame where the dwell reaches ``max_dwell_s``. A
  vehicle that stood there from the first frame is in the background, and is found only
  when it leaves: its dwell is counted from the first frame, and its event comes then.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.common.arrays import PointXY
from services.common.boxes import BoxXYWH, box_centre
from services.common.events import ViolationType
from services.detector.geometry import crossing_fraction, point_in_polygon
from services.detector.signal import LightState, SignalTimeline
from services.detector.tracker import LeftPlace, Move, TrackView, vehicle_shaped, vehicles_across

# A centre that passes just beyond a stop line's painted end still crossed it: scene files
# are drawn by hand, and a box centre wobbles by a few pixels.
SEGMENT_MARGIN = 0.05
# Frame times a red-light rule remembers: a track coasts for fewer frames than this.
FRAME_TIMES_KEPT = 64
# A vehicle found only by the place it left has no track history to trust it by.
LEFT_PLACE_CONFIDENCE = 0.6
# A crossing seen on a move longer than this is stamped where the move met the line.
INTERPOLATED_MOVE_MS = 250
# A track found again after a move this many frames long (two or more frames unseen), on a
# blob under this share of the one it was last seen on, may have been handed a piece of
# another vehicle (a rider's wheel past the line, a car on the far side), not its own.
LONG_GAP_FRAMES = 3
FOUND_ON_A_PIECE_AREA = 1 / 3
# A blob this many vehicle widths across (its short side) at both ends of a move is a
# group (a queue moving up as one blob), not a vehicle: a bus seen from behind is some 3.5
# motorbike widths across, where motorbikes set the learnt width.
GROUP_VEHICLES_ACROSS = 4.0


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A violation before it becomes an event: which track, where, and when."""

    violation_type: ViolationType
    track_id: int
    frame: int
    ts_ms: int
    box_xywh: BoxXYWH
    confidence: float
    # The frame whose picture shows ``box_xywh``: later than ``frame`` for a crossing made
    # while the track coasted, stamped at the frame its move met the line.
    seen_frame: int
    # For parking: the capture time the stay is timed from.
    parked_since_ts_ms: int | None = None


def _confidence(track: TrackView) -> float:
    # A long-lived track is a vehicle, not a noise blob; 20 observations earn full trust.
    return round(min(0.99, 0.6 + 0.02 * track.hits), 2)


class RedLightRule:
    """Finds forward crossings as they happen and judges them once the light is decided."""

    def __init__(self, *, line_xy: tuple[PointXY, PointXY], travel_direction: PointXY) -> None:
        self._line = line_xy
        self._direction = travel_direction
        self._crossed: set[int] = set()
        self._pending: list[RuleHit] = []
        # The capture times of the latest frames, to stamp a crossing made while coasting.
        self._frame_ts: deque[tuple[int, int]] = deque(maxlen=FRAME_TIMES_KEPT)

    def observe(
        self,
        track: TrackView,
        *,
        frame: int,
        ts_ms: int,
        vehicle_width_px: float | None = None,
    ) -> None:
        """Record the track's first forward crossing of the line, if it crosses now.

        ``vehicle_width_px`` is the width of a vehicle as learnt so far, if it is known.
        """
        if not self._frame_ts or self._frame_ts[-1][0] != frame:
            self._frame_ts.append((frame, ts_ms))
        if track.track_id in self._crossed and self._waits_behind(track):
            # The track crossed with a group (riders nose to tail in one blob) and stayed
            # with the one who stopped short of the line: its crossing is still to come.
            self._crossed.discard(track.track_id)
        move = track.last_move
        if (
            move is None
            or track.coasting
            or not track.established
            or track.track_id in self._crossed
        ):
            return
        if not all(
            vehicle_shaped((box[2], box[3])) for box in (move.from_box_xywh, move.to_box_xywh)
        ):
            # A sliver along painted lines (a shaken kerb, a stop line) is no vehicle, and a
            # sliver's track that is handed a vehicle's blob did not bring it across the line.
            return
        if _found_on_a_piece(move) or (
            vehicle_width_px is not None and _group(move, vehicle_width_px=vehicle_width_px)
        ):
            return
        start, end = box_centre(move.from_box_xywh), box_centre(move.to_box_xywh)
        # A vehicle moves less than twice its length a frame; a longer jump is a track
        # that was handed another blob (a shaken kerb line, a passing car).
        reach = 2 * max(move.to_box_xywh[2], move.to_box_xywh[3]) * max(move.frames, 1)
        if math.hypot(end[0] - start[0], end[1] - start[1]) > reach:
            return
        fraction = crossing_fraction(
            start_xy=start, end_xy=end, line_a_xy=self._line[0], line_b_xy=self._line[1]
        )
        if fraction is None or not -SEGMENT_MARGIN <= fraction <= 1 + SEGMENT_MARGIN:
            return
        forward = (end[0] - start[0]) * self._direction[0] + (end[1] - start[1]) * self._direction[
            1
        ]
        if forward <= 0:
            return
        self._crossed.add(track.track_id)
        crossed_frame, crossed_ts_ms = self._when_crossed(start, end, move.frames, frame=frame)
        self._pending.append(
            RuleHit(
                violation_type=ViolationType.RED_LIGHT,
                track_id=track.track_id,
                frame=crossed_frame,
                ts_ms=crossed_ts_ms,
                box_xywh=track.box_xywh,
                confidence=_confidence(track),
                seen_frame=frame,
            )
        )

    def _when_crossed(
        self, start_xy: PointXY, end_xy: PointXY, frames: int, *, frame: int
    ) -> tuple[int, int]:
        """The first frame, and its time, at which the centre was past the line, as the
        move from ``start_xy`` (``frames`` ago) to ``end_xy`` (now) interpolates it.

        Only a long move (a coast) is interpolated. Over a short one the picture may not
        have changed in between (a 12 fps camera written at 60 fps repeats each picture
        five times), so the crossing is first seen, and stamped, where the track was seen.
        """
        times = dict(self._frame_ts)
        started_ms = times.get(frame - frames)
        if started_ms is None or times[frame] - started_ms <= INTERPOLATED_MOVE_MS:
            # A frame older than those kept (a very long coast) keeps the frame seen, too.
            return frame, times[frame]
        before, after = (
            past_line_px(p, line_xy=self._line, travel_direction=self._direction)
            for p in (start_xy, end_xy)
        )
        share = min(max(-before / (after - before), 0.0), 1.0) if after > before else 1.0
        crossed = frame - frames + max(1, math.ceil(share * frames))
        # The first frame there is at or after it: a live feed skips frames that came too
        # late, and a corrupt one is never seen.
        stamped = min(kept for kept in times if kept >= crossed)
        return stamped, times[stamped]

    def _waits_behind(self, track: TrackView) -> bool:
        """Whether the track stands behind the line by a quarter of its own length or more."""
        if track.stay is None:
            return False
        dx, dy = self._direction
        _, _, w, h = track.box_xywh
        length = (abs(dx) * w + abs(dy) * h) / math.hypot(dx, dy)
        behind = -past_line_px(
            track.stay.anchor_xy, line_xy=self._line, travel_direction=self._direction
        )
        return behind >= 0.25 * length

    def retain(self, track_ids: set[int]) -> None:
        """Forget tracks that have ended (pending crossings are kept until judged)."""
        self._crossed &= track_ids

    def judge(self, signal: SignalTimeline) -> list[RuleHit]:
        """Crossings whose light state is now final and was red."""
        decided = [hit for hit in self._pending if hit.frame <= signal.decided_through]
        self._pending = [hit for hit in self._pending if hit.frame > signal.decided_through]
        return [hit for hit in decided if signal.state_at(hit.frame) == LightState.RED]


def _found_on_a_piece(move: Move) -> bool:
    """Whether the move ends a long gap on a much smaller blob than the one it started on.

    A single missed frame that ends on part of the vehicle (its front lost on the line's
    paint) is believed: the vehicle cannot have gone far.

    >>> _found_on_a_piece(Move((0, 0, 30, 30), (0, -40, 10, 12), frames=6))
    True
    >>> _found_on_a_piece(Move((0, 0, 30, 30), (0, -10, 10, 12), frames=2))
    False
    """
    if move.frames < LONG_GAP_FRAMES:
        return False
    (_, _, from_w, from_h), (_, _, to_w, to_h) = move.from_box_xywh, move.to_box_xywh
    return to_w * to_h < FOUND_ON_A_PIECE_AREA * from_w * from_h


def _group(move: Move, *, vehicle_width_px: float) -> bool:
    """Whether both ends of the move are blobs of several vehicles abreast.

    >>> queue = Move((0, 0, 120, 90), (0, -10, 120, 100), frames=1)
    >>> _group(queue, vehicle_width_px=20.0), _group(queue, vehicle_width_px=30.0)
    (True, False)
    """
    return all(
        vehicles_across((box[2], box[3]), vehicle_width_px=vehicle_width_px)
        >= GROUP_VEHICLES_ACROSS
        for box in (move.from_box_xywh, move.to_box_xywh)
    )


def past_line_px(
    point_xy: PointXY, *, line_xy: tuple[PointXY, PointXY], travel_direction: PointXY
) -> float:
    """How far the point lies past the line (its infinite extension) in the direction of
    travel; negative behind it.

    >>> past_line_px((20.0, 105.0), line_xy=((0.0, 100.0), (50.0, 100.0)), travel_direction=(0, -1))
    -5.0
    """
    (ax, ay), (bx, by) = line_xy
    # The line's normal, turned to point the way of travel.
    nx, ny = ay - by, bx - ax
    if nx * travel_direction[0] + ny * travel_direction[1] < 0:
        nx, ny = -nx, -ny
    return ((point_xy[0] - ax) * nx + (point_xy[1] - ay) * ny) / math.hypot(nx, ny)


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    polygon_xy: npt.NDArray[np.float32]
    max_dwell_s: float


class ParkingRule:
    """Counts each standing track's dwell inside the no-parking zones."""

    def __init__(self, zones: list[Zone]) -> None:
        self._zones = zones
        # (track id, first still frame): one event per stay, however long the stay lasts.
        self._reported: set[tuple[int, int]] = set()

    @property
    def zones(self) -> list[Zone]:
        return list(self._zones)

    def in_zone(self, point_xy: PointXY) -> bool:
        """Whether the point lies in any no-parking zone."""
        return any(point_in_polygon(point_xy, zone.polygon_xy) for zone in self._zones)

    def retain(self, track_ids: set[int]) -> None:
        """Forget the stays of tracks that have ended."""
        self._reported = {stay for stay in self._reported if stay[0] in track_ids}

    def stood_from_start(
        self, place: LeftPlace, *, first: tuple[int, int], now: tuple[int, int]
    ) -> RuleHit | None:
        """A hit for a vehicle that stood in a zone from the first frame until it left, if
        that reached the zone's ``max_dwell_s``; ``first`` and ``now`` are the (frame, capture
        ms) of the first frame and of this one.

        Its frame and time are where the dwell, counted from the first frame, reached
        ``max_dwell_s``, and its box is the place it stood in, as the first frame shows it.
        Frame times are taken as even between the two frames named.
        """
        (first_frame, first_ts_ms), (frame, ts_ms) = first, now
        ms_per_frame = (ts_ms - first_ts_ms) / max(frame - first_frame, 1)
        left_ts_ms = first_ts_ms + (place.left_frame - first_frame) * ms_per_frame
        centre = box_centre(place.box_xywh)
        for zone in self._zones:
            dwell_ms = zone.max_dwell_s * 1000.0
            if left_ts_ms - first_ts_ms >= dwell_ms and point_in_polygon(centre, zone.polygon_xy):
                return RuleHit(
                    violation_type=ViolationType.ILLEGAL_PARKING,
                    track_id=place.track_id,
                    frame=first_frame + math.ceil(dwell_ms / ms_per_frame),
                    ts_ms=first_ts_ms + round(dwell_ms),
                    box_xywh=place.box_xywh,
                    confidence=LEFT_PLACE_CONFIDENCE,
                    seen_frame=first_frame,
                    parked_since_ts_ms=first_ts_ms,
                )
        return None

    def observe(self, track: TrackView, *, frame: int, ts_ms: int) -> RuleHit | None:
        """A hit when the track's stay in a zone reaches that zone's ``max_dwell_s``."""
        stay = track.stay
        if stay is None or not track.established:
            return None
        key = (track.track_id, stay.since_frame)
        if key in self._reported:
            return None
        dwell_s = (ts_ms - stay.since_ts_ms) / 1000.0
        for zone in self._zones:
            if dwell_s >= zone.max_dwell_s and point_in_polygon(stay.anchor_xy, zone.polygon_xy):
                self._reported.add(key)
                return RuleHit(
                    violation_type=ViolationType.ILLEGAL_PARKING,
                    track_id=track.track_id,
                    frame=frame,
                    ts_ms=ts_ms,
                    box_xywh=track.box_xywh,
                    confidence=_confidence(track),
                    seen_frame=frame,
                    parked_since_ts_ms=stay.since_ts_ms,
                )
        return None
