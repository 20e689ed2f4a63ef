"""Vehicles that stand where no track sees them standing.

A vehicle that stops while its blob is merged with passing traffic is followed by a track of
the merged blob, which never stands still; its own place in the mask does. Foreground that
stays put over the tracker's stationary window (see ``persistence``) shows that place. A
region grows while a vehicle pulls in, so it counts once its box has held for
``SETTLE_FRAMES``; then, if shaped like a vehicle, it is a vehicle that has stood since the
window before the region was first seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.common.arrays import Mask, PointXY
from services.common.boxes import BoxXYWH, box_centre, box_iou, covered_fraction
from services.detector.blobs import find_blobs
from services.detector.tracker.persistence import PersistentForeground
from services.detector.tracker.sizes import vehicle_shaped
from services.detector.tracker.track import MERGE_COVER

# A region of persistent foreground has settled once its box has held (to this IoU) for
# this many frames.
SETTLED_IOU = 0.85
SETTLE_FRAMES = 5


@dataclass(frozen=True, slots=True)
class StandingRegion:
    """A region of persistent foreground: its box, the frame and time it has stood since,
    and for how many frames running its box has held."""

    box_xywh: BoxXYWH
    since_frame: int
    since_ts_ms: int
    settled: int = 0


@dataclass(frozen=True, slots=True)
class _Stamp:
    frame: int
    ts_ms: int


class StandingRegions:
    """Follows regions of persistent foreground from frame to frame until they settle."""

    def __init__(self) -> None:
        self._regions: list[StandingRegion] = []

    def update(
        self, boxes: list[BoxXYWH], *, since_frame: int, since_ts_ms: int
    ) -> list[StandingRegion]:
        """This frame's regions (``boxes``); returns those settled and shaped like a vehicle.

        A region new in this frame has stood since ``since_frame`` (the start of the window
        over which it persisted).
        """
        regions: list[StandingRegion] = []
        for box in boxes:
            # A region that grows (a vehicle pulling in) keeps its start; any other change
            # (one vehicle leaving, another arriving) starts it afresh.
            earlier = next(
                (r for r in self._regions if covered_fraction(r.box_xywh, box) > MERGE_COVER),
                None,
            )
            if earlier is None:
                regions.append(
                    StandingRegion(box_xywh=box, since_frame=since_frame, since_ts_ms=since_ts_ms)
                )
                continue
            settled = earlier.settled + 1 if box_iou(earlier.box_xywh, box) >= SETTLED_IOU else 0
            regions.append(
                StandingRegion(
                    box_xywh=box,
                    since_frame=earlier.since_frame,
                    since_ts_ms=earlier.since_ts_ms,
                    settled=settled,
                )
            )
        self._regions = regions
        return [
            r
            for r in regions
            if r.settled >= SETTLE_FRAMES and vehicle_shaped((r.box_xywh[2], r.box_xywh[3]))
        ]


class StandingVehicles:
    """Settled, vehicle-shaped regions of persistent foreground whose centre is ``where`` a
    stay matters, over a window of ``window_frames`` frames."""

    def __init__(
        self, *, window_frames: int, min_area_px: int, where: Callable[[PointXY], bool]
    ) -> None:
        self._persistent = PersistentForeground(frames=window_frames)
        self._window: deque[_Stamp] = deque(maxlen=self._persistent.frames)
        self._regions = StandingRegions()
        self._min_area_px = min_area_px
        self._where = where

    def update(self, mask: Mask, *, frame: int, ts_ms: int) -> list[StandingRegion]:
        """Add this frame's foreground mask; returns the standing vehicles it shows."""
        self._window.append(_Stamp(frame=frame, ts_ms=ts_ms))
        standing = self._persistent.update(mask)
        if standing is None:
            return []
        since = self._window[0]
        settled = self._regions.update(
            find_blobs(standing, min_area_px=self._min_area_px),
            since_frame=since.frame,
            since_ts_ms=since.ts_ms,
        )
        return [r for r in settled if self._where(box_centre(r.box_xywh))]
