"""Which blob is which track's: fragments rejoined, merged blobs shared, greedy IoU matching.

Greedy IoU association against constant-velocity predictions. A blob that covers two or more
established tracks (vehicles side by side, or a car passing in front of a parked one) is not
given to either: each coasts on its prediction, so both keep their ids (and a parked car its
position and dwell clock) until the blobs part again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.common.boxes import BoxXYWH, box_iou, covered_fraction
from services.detector.geometry import grown_box, union_box
from services.detector.tracker.sizes import side_by_side
from services.detector.tracker.track import MIN_HITS, Track

# A track hidden in a merged blob must still have this much of its box in the foreground: a
# blob's bounding box can span a vehicle's place without its pixels being there (a long thin
# blob along a kerb, an L-shaped one round a corner), and the vehicle may have left.
MIN_HIDDEN_FILL = 0.3
# A merged blob hides a track when it covers this much of the track's predicted box.
HIDDEN_COVER = 0.6

# The foreground fraction of a box (0 to 1), from the frame's mask.
FillFn = Callable[[BoxXYWH], float]


@dataclass(frozen=True, slots=True)
class Blobs:
    """A frame's blob boxes, with the indices of those rejoined from pieces."""

    boxes_xywh: list[BoxXYWH]
    joined: frozenset[int]


def join_fragments(
    boxes: list[BoxXYWH],
    tracks: Sequence[Track],
    predictions: dict[int, BoxXYWH],
    *,
    vehicle_width_px: float | None,
) -> Blobs:
    """Reunite the pieces of one moving vehicle whose mask broke apart.

    A vehicle's mask breaks where it passes over paint of its own grey (the stop line,
    above all, where a break would hide the crossing). Pieces that lie within one
    confirmed moving track's prediction, belong to no other track's, and together are
    no bigger than that track's vehicle was seen whole, become one box again.
    """
    confirmed = [t for t in tracks if t.hits >= MIN_HITS]
    joined = list(boxes)
    made: list[BoxXYWH] = []
    if len(boxes) < 2 or not confirmed:
        return Blobs(boxes_xywh=joined, joined=frozenset())
    for track in sorted(confirmed, key=lambda t: -t.hits):
        if track.stationary:
            continue
        pred = predictions[track.track_id]
        width, height = track.size_wh
        # The track may hold only one piece: the rest of the vehicle lies within its
        # missing length of that piece, on either side.
        margin = max(2.0, 0.15 * max(pred[2], pred[3]))
        reach = grown_box(
            pred,
            margin_x=margin + max(0.0, width - pred[2]),
            margin_y=margin + max(0.0, height - pred[3]),
        )
        pieces = [b for b in joined if covered_fraction(b, reach) > 0.8]
        if len(pieces) < 2:
            continue
        union = union_box(pieces)
        if union[2] > 1.2 * width + 2 or union[3] > 1.2 * height + 2:
            continue
        if vehicle_width_px is not None and side_by_side(pieces, vehicle_width_px=vehicle_width_px):
            # The track followed vehicles side by side, which have parted.
            continue
        if any(
            covered_fraction(piece, predictions[other.track_id]) > 0.5
            for piece in pieces
            for other in confirmed
            if other is not track
        ):
            continue
        joined = [b for b in joined if b not in pieces] + [union]
        made.append(union)
    return Blobs(boxes_xywh=joined, joined=frozenset(i for i, b in enumerate(joined) if b in made))


def hidden_in_merges(
    boxes: list[BoxXYWH],
    tracks: Sequence[Track],
    predictions: dict[int, BoxXYWH],
    *,
    fill: FillFn | None,
) -> list[tuple[int, list[Track]]]:
    """The blobs that each hide two or more confirmed tracks, with the tracks they hide.

    Such a blob is vehicles side by side, or one passing in front of another: given to
    neither, each coasts on its prediction. ``fill`` gives the foreground fraction of a box;
    without it, a blob is taken to fill its bounding box.
    """
    claimants = [(t, predictions[t.track_id]) for t in tracks if t.hits >= MIN_HITS]
    merges: list[tuple[int, list[Track]]] = []
    for i, box in enumerate(boxes):
        covered = [
            t
            for t, prediction in claimants
            if covered_fraction(prediction, box) > HIDDEN_COVER
            and (fill is None or fill(prediction) >= MIN_HIDDEN_FILL)
        ]
        if len(covered) >= 2:
            merges.append((i, covered))
    return merges


def greedy_matches(
    tracks: Sequence[Track], predictions: dict[int, BoxXYWH], boxes: dict[int, BoxXYWH]
) -> list[tuple[Track, int]]:
    """Pairs of (track, blob index), best score first, each track and blob used once."""
    pairs = sorted(
        (-score, t.track_id, i)
        for t in tracks
        for i, box in boxes.items()
        if (score := match_score(predictions[t.track_id], box)) > 0
    )
    by_id = {t.track_id: t for t in tracks}
    matched: list[tuple[Track, int]] = []
    used_tracks: set[int] = set()
    used_boxes: set[int] = set()
    for _, track_id, i in pairs:
        if track_id in used_tracks or i in used_boxes:
            continue
        used_tracks.add(track_id)
        used_boxes.add(i)
        matched.append((by_id[track_id], i))
    return matched


def match_score(predicted: BoxXYWH, box: BoxXYWH) -> float:
    """IoU, or for a fast or small vehicle that no longer overlaps, closeness of centres."""
    iou = box_iou(predicted, box)
    if iou > 0:
        return 1.0 + iou
    # Every track is scored against every blob each frame, and most pairs do not overlap:
    # the gate and the centres' distance are written out, with the same arithmetic as
    # max(), box_centre() and distance() would do.
    px, py, pw, ph = predicted
    bx, by, bw, bh = box
    gate = ph if ph > pw else pw
    dist = math.hypot((px + pw / 2.0) - (bx + bw / 2.0), (py + ph / 2.0) - (by + bh / 2.0))
    return 1.0 - dist / gate if dist < gate else 0.0
