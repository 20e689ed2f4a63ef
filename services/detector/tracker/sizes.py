"""What a vehicle looks like in size: its proportions, and the camera's vehicle width.

A blob of two vehicles side by side and a vehicle broken into pieces over paint both give
the tracker several boxes where it expected one; the camera's vehicle width tells them apart.
"""

from __future__ import annotations

import statistics
from collections import deque

from services.common.boxes import BoxXYWH
from services.detector.geometry import union_box

# Even an articulated bus is less than six times as long as it is wide.
MAX_ASPECT = 6.0
# The camera's vehicle width is the median short side of the last WIDTH_SAMPLES vehicles seen
# whole and moving (enough to outvote the odd blob of two), once there are MIN_WIDTH_SAMPLES.
WIDTH_SAMPLES = 100
MIN_WIDTH_SAMPLES = 20
# Boxes that together span this many vehicle widths across, each at least SINGLE_WIDTH of one,
# are vehicles side by side, not the pieces of one vehicle.
SIDE_BY_SIDE_WIDTHS = 1.6
SINGLE_WIDTH = 0.75


class VehicleWidths:
    """The camera's vehicle width, learnt from the short sides of vehicles seen whole."""

    def __init__(self) -> None:
        self._widths: deque[float] = deque(maxlen=WIDTH_SAMPLES)

    def add(self, size_wh: tuple[float, float]) -> None:
        """Learn from one whole, moving vehicle's box size."""
        self._widths.append(min(size_wh))

    def width_px(self) -> float | None:
        """The vehicle width in working pixels, once enough vehicles were seen.

        >>> widths = VehicleWidths()
        >>> for _ in range(MIN_WIDTH_SAMPLES): widths.add((16.0, 40.0))
        >>> widths.width_px()
        16.0
        """
        if len(self._widths) < MIN_WIDTH_SAMPLES:
            return None
        return statistics.median(self._widths)


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
    _, _, width, height = union_box(boxes)
    return vehicles_across((width, height), vehicle_width_px=vehicle_width_px) >= (
        SIDE_BY_SIDE_WIDTHS
    ) and all(
        vehicles_across((b[2], b[3]), vehicle_width_px=vehicle_width_px) >= SINGLE_WIDTH
        for b in boxes
    )


def parted(
    followed_wh: tuple[float, float], observed_wh: tuple[float, float], *, vehicle_width_px: float
) -> bool:
    """Whether a track that followed vehicles side by side (``followed_wh``) now sees one
    of them alone (``observed_wh``).

    >>> parted((36.0, 40.0), (16.0, 40.0), vehicle_width_px=16.0)
    True
    """
    return (
        vehicles_across(followed_wh, vehicle_width_px=vehicle_width_px) >= SIDE_BY_SIDE_WIDTHS
        and SINGLE_WIDTH
        <= vehicles_across(observed_wh, vehicle_width_px=vehicle_width_px)
        < SIDE_BY_SIDE_WIDTHS
    )
