"""Axis-aligned ``x, y, w, h`` boxes: centre, overlap and IoU. Pure, for every service."""

from __future__ import annotations

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


def covered_fraction(inner: BoxXYWH, outer: BoxXYWH) -> float:
    """How much of ``inner``'s area lies inside ``outer`` (0 for an empty ``inner``).

    >>> covered_fraction((0, 0, 4, 4), (2, 0, 10, 10)), covered_fraction((0, 0, 0, 4), (0, 0, 9, 9))
    (0.5, 0.0)
    """
    area = inner[2] * inner[3]
    return box_intersection(inner, outer) / area if area > 0 else 0.0
