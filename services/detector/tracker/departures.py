"""Vehicles that leave a place the background learnt them in.

A vehicle that stood in the first frames (a queue at the line, a car parked in a zone) is
part of the background. When it moves off, the road it uncovers is foreground too, and the
two make one blob: its rear edge stays where the vehicle stood while its front edge follows
the vehicle. The blob's centre moves at half the vehicle's speed, so a rider creeping a
length over the line on red would seem never to cross it. The blob's first box is the
vehicle's own size (its trail); while a blob holds all of the trail and has grown beyond
it on one side only, the vehicle is the trail moved to that side's end.
"""

from __future__ import annotations

from services.common.boxes import BoxXYWH, covered_fraction

# Edges of the blob within this many pixels (plus a share of the trail's size) of the
# trail's have not moved; the blob must have grown past one edge by more than that.
EDGE_TOLERANCE_PX = 1.5
EDGE_TOLERANCE_SHARE = 0.08
# The blob must hold this much of the trail.
TRAIL_COVER = 0.9
# A trail is kept only for a blob this far inside the frame: a vehicle entering over the
# frame's edge also grows from a fixed edge, the frame's.
BORDER_PX = 2.0


def may_be_trail(box_xywh: BoxXYWH, *, frame_wh: tuple[int, int]) -> bool:
    """Whether a new track's first box may be a place a vehicle leaves (clear of the edges).

    >>> wh = (320, 180)
    >>> may_be_trail((10, 10, 8, 20), frame_wh=wh), may_be_trail((0, 9, 8, 20), frame_wh=wh)
    (True, False)
    """
    x, y, w, h = box_xywh
    return (
        x >= BORDER_PX
        and y >= BORDER_PX
        and x + w <= frame_wh[0] - BORDER_PX
        and y + h <= frame_wh[1] - BORDER_PX
    )


def departing_box(trail: BoxXYWH, blob: BoxXYWH) -> BoxXYWH | None:
    """The box of the vehicle leaving ``trail``, when ``blob`` is the trail and the vehicle
    together; None when it is not (the blob left the trail, or moved as a whole).

    A blob that grew 6 px upwards from a 10x20 trail holds a vehicle 6 px up:

    >>> departing_box((100.0, 100.0, 10.0, 20.0), (100.0, 94.0, 10.0, 26.0))
    (100.0, 94.0, 10.0, 20.0)
    >>> departing_box((100.0, 100.0, 10.0, 20.0), (100.0, 94.0, 10.0, 20.0)) is None
    True
    """
    if covered_fraction(trail, blob) < TRAIL_COVER:
        return None
    tx, ty, tw, th = trail
    bx, by, bw, bh = blob
    # How far the blob reaches past each edge of the trail: left, right, up, down.
    grown = (tx - bx, (bx + bw) - (tx + tw), ty - by, (by + bh) - (ty + th))
    tolerance = EDGE_TOLERANCE_PX + EDGE_TOLERANCE_SHARE * max(tw, th)
    side = max(range(4), key=lambda i: grown[i])
    if grown[side] <= tolerance or any(
        abs(g) > tolerance for i, g in enumerate(grown) if i != side
    ):
        return None
    shift = grown[side]
    dx, dy = ((-shift, 0.0), (shift, 0.0), (0.0, -shift), (0.0, shift))[side]
    return (tx + dx, ty + dy, tw, th)
