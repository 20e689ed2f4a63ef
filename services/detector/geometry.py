"""Small pure geometry helpers: boxes, segment crossing, polygons, coordinate scaling."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from services.common.arrays import PointXY

BoxXYWH = tuple[float, float, float, float]


def box_centre(box_xywh: BoxXYWH) -> PointXY:
    """The centre of an ``x, y, w, h`` box.

    >>> box_centre((10, 20, 4, 6))
    (12.0, 23.0)
    """
    x, y, w, h = box_xywh
    return (x + w / 2.0, y + h / 2.0)


def box_iou(a: BoxXYWH, b: BoxXYWH) -> float:
    """Intersection over union of two ``x, y, w, h`` boxes (0 when either is empty).

    >>> box_iou((0, 0, 4, 4), (2, 0, 4, 4))
    0.3333333333333333
    """
    inter = box_intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def box_intersection(a: BoxXYWH, b: BoxXYWH) -> float:
    """The area two ``x, y, w, h`` boxes share.

    >>> box_intersection((0, 0, 4, 4), (2, 1, 4, 4)), box_intersection((0, 0, 4, 4), (5, 0, 1, 1))
    (6, 0.0)
    """
    # The tracker calls this a few hundred times a frame, so it is written out: conditional
    # expressions cost less than calls to min() and max(), and pick the same operand
    # (min keeps the first of equals, max too), so the result is the same to the bit.
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    a_end, b_end = ax + aw, bx + bw
    w = (b_end if b_end < a_end else a_end) - (bx if bx > ax else ax)
    a_end, b_end = ay + ah, by + bh
    h = (b_end if b_end < a_end else a_end) - (by if by > ay else ay)
    return (0.0 if w < 0.0 else w) * (0.0 if h < 0.0 else h)


def crossing_fraction(
    *, start_xy: PointXY, end_xy: PointXY, line_a_xy: PointXY, line_b_xy: PointXY
) -> float | None:
    """Where the move ``start -> end`` meets the segment ``a -> b``, as a fraction along it.

    Returns None when the move does not reach the line's infinite extension, that is, when
    ``start`` and ``end`` lie strictly on the same side. The caller decides how far outside
    ``[0, 1]`` still counts as crossing the segment.

    >>> crossing_fraction(start_xy=(5, 10), end_xy=(5, -10), line_a_xy=(0, 0), line_b_xy=(10, 0))
    0.5
    """
    ax, ay = line_a_xy
    dx, dy = line_b_xy[0] - ax, line_b_xy[1] - ay
    side_start = dx * (start_xy[1] - ay) - dy * (start_xy[0] - ax)
    side_end = dx * (end_xy[1] - ay) - dy * (end_xy[0] - ax)
    if (side_start > 0 and side_end > 0) or (side_start < 0 and side_end < 0):
        return None
    if side_start == side_end:  # the move runs along the line itself
        return None
    t = side_start / (side_start - side_end)
    px = start_xy[0] + t * (end_xy[0] - start_xy[0]) - ax
    py = start_xy[1] + t * (end_xy[1] - start_xy[1]) - ay
    return float((px * dx + py * dy) / (dx * dx + dy * dy))


def point_in_polygon(point_xy: PointXY, polygon_xy: npt.NDArray[np.float32]) -> bool:
    """True when the point lies inside or on the edge of the polygon (N x 2 float32)."""
    return bool(cv2.pointPolygonTest(polygon_xy, point_xy, False) >= 0)


@dataclass(frozen=True, slots=True)
class Scale:
    """Maps scene (source-resolution) pixels to working pixels and back.

    >>> Scale(factor=0.25).to_work((400, 80))
    (100.0, 20.0)
    """

    factor: float

    def to_work(self, point_xy: PointXY) -> PointXY:
        return (point_xy[0] * self.factor, point_xy[1] * self.factor)

    def box_to_scene(self, box_xywh: BoxXYWH) -> tuple[int, int, int, int]:
        """A working-scale box as whole scene pixels, as events carry it."""
        x, y, w, h = (round(v / self.factor) for v in box_xywh)
        return (max(x, 0), max(y, 0), max(w, 1), max(h, 1))
