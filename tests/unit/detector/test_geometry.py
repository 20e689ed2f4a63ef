"""Box geometry that the tracker calls hundreds of times a frame is written out for speed; it
must give what the plain min()/max() formulation gives, to the bit (sign of zero included)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.boxes import BoxXYWH, box_intersection, box_iou
from services.detector.tracker.association import match_score


def reference_intersection(a: BoxXYWH, b: BoxXYWH) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def reference_iou(a: BoxXYWH, b: BoxXYWH) -> float:
    inter = reference_intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def reference_match_score(predicted: BoxXYWH, box: BoxXYWH) -> float:
    iou = reference_iou(predicted, box)
    if iou > 0:
        return 1.0 + iou
    gate = max(predicted[2], predicted[3])
    pc = (predicted[0] + predicted[2] / 2.0, predicted[1] + predicted[3] / 2.0)
    bc = (box[0] + box[2] / 2.0, box[1] + box[3] / 2.0)
    distance = math.hypot(pc[0] - bc[0], pc[1] - bc[1])
    return 1.0 - distance / gate if distance < gate else 0.0


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0.0, 0.0, 4.0, 4.0), (2.0, 1.0, 4.0, 4.0), 6.0),  # corner overlap
        ((0.0, 0.0, 4.0, 4.0), (1.0, 1.0, 2.0, 2.0), 4.0),  # one inside the other
        ((0.0, 0.0, 4.0, 4.0), (4.0, 0.0, 4.0, 4.0), 0.0),  # edges touch
        ((0.0, 0.0, 4.0, 4.0), (9.0, 9.0, 1.0, 1.0), 0.0),  # apart
        ((0.0, 0.0, 0.0, 4.0), (0.0, 0.0, 4.0, 4.0), 0.0),  # empty box
        ((-3.0, -2.0, 4.0, 4.0), (0.0, 0.0, 4.0, 4.0), 2.0),  # negative corner
    ],
)
def test_box_intersection(a: BoxXYWH, b: BoxXYWH, expected: float) -> None:
    assert box_intersection(a, b) == expected
    assert box_intersection(b, a) == expected


# Coordinates on a quarter-pixel grid (as predictions and blob boxes are) and arbitrary
# floats, so that ties, touching edges and signed zeros all come up.
_coord = st.one_of(
    st.integers(-40, 400).map(lambda v: v / 4.0),
    st.floats(-50.0, 500.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0]),
)
_size = st.one_of(
    st.integers(0, 200).map(lambda v: v / 4.0),
    st.floats(0.0, 200.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0]),
)
_box = st.tuples(_coord, _coord, _size, _size)


@given(a=_box, b=_box)
def test_written_out_geometry_matches_min_max_formulation_bit_for_bit(
    a: BoxXYWH, b: BoxXYWH
) -> None:
    # repr tells 0.0 from -0.0 and shows every bit of the mantissa.
    assert repr(box_intersection(a, b)) == repr(reference_intersection(a, b))
    assert repr(box_iou(a, b)) == repr(reference_iou(a, b))
    assert repr(match_score(a, b)) == repr(reference_match_score(a, b))
