"""Small pure geometry helpers: boxes, segment crossing, polygons, coordinate scaling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from services.common.arrays import PointXY
from services.common.boxes import BoxXYWH


def grown_box(box_xywh: BoxXYWH, *, margin_x: float, margin_y: float) -> BoxXYWH:
    """The box widened by ``margin_x`` on the left and right and ``margin_y`` above and below.

    >>> grown_box((10, 10, 4, 4), margin_x=1, margin_y=2)
    (9, 8, 6, 8)
    """
    x, y, w, h = box_xywh
    return (x - margin_x, y - margin_y, w + 2 * margin_x, h + 2 * margin_y)


def union_box(boxes_xywh: Sequence[BoxXYWH]) -> BoxXYWH:
    """The smallest box holding all of ``boxes_xywh`` (at least one).

    >>> union_box([(0, 0, 4, 4), (6, 2, 2, 5)])
    (0, 0, 8, 7)
    """
    x0 = min(b[0] for b in boxes_xywh)
    y0 = min(b[1] for b in boxes_xywh)
    x1 = max(b[0] + b[2] for b in boxes_xywh)
    y1 = max(b[1] + b[3] for b in boxes_xywh)
    return (x0, y0, x1 - x0, y1 - y0)


def distance(a_xy: PointXY, b_xy: PointXY) -> float:
    """The Euclidean distance between two points.

    >>> distance((0, 0), (3, 4))
    5.0
    """
    return math.hypot(a_xy[0] - b_xy[0], a_xy[1] - b_xy[1])


def pixel_box(box_xywh: BoxXYWH, *, image_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box in whole pixels, clipped to an image of ``image_wh`` (its size may be 0).

    >>> pixel_box((-2.4, 5.6, 10.0, 10.0), image_wh=(20, 12))
    (0, 6, 10, 6)
    """
    x, y, w, h = (round(v) for v in box_xywh)
    x0, y0 = max(x, 0), max(y, 0)
    return (x0, y0, min(w, image_wh[0] - x0), min(h, image_wh[1] - y0))


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
