"""Precision, recall and timing error of detected events against ground truth.

An event matches a truth violation of the same type (and camera, when both name one) whose
time is within the type's tolerance: 1.5 s for red light, 3 s for parking, and, when both
carry a box, whose place agrees (see :func:`same_place`). Matching is one-to-one, greedily
by smallest time difference. Times are ``frame / fps`` on both sides,
so a replay (whose timestamps come from its own epoch) scores the same as a live run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.boxes import BoxXYWH, box_intersection
from services.common.events import ViolationType
from services.detector.geometry import grown_box

TOLERANCE_S = {ViolationType.RED_LIGHT: 1.5, ViolationType.ILLEGAL_PARKING: 3.0}
DEFAULT_FPS = 10.0
# Boxes in one place overlap once each is grown by this share of its own size on every side,
# and the event's box is at most this many times the truth's area (a box round a whole
# queue is not the place of one rider in it; a box round part of a vehicle may be).
PLACE_SLACK = 0.25
PLACE_AREA_RATIO = 4.0


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One violation, true or detected."""

    type: ViolationType
    frame: int
    camera_id: str | None = None
    # Where, in the scene's pixels: a hand label's box at the frame, or an event's.
    bbox_xywh: BoxXYWH | None = None


@dataclass(frozen=True, slots=True)
class TypeScore:
    type: ViolationType
    truth: int
    detected: int
    matched: int
    mean_abs_error_s: float | None
    max_abs_error_s: float | None
    # Frames of the truth violations nothing matched, and the detections that matched none.
    missed_frames: tuple[int, ...] = ()
    false_alarms: tuple[Occurrence, ...] = ()

    @property
    def false_alarm_frames(self) -> tuple[int, ...]:
        return tuple(alarm.frame for alarm in self.false_alarms)

    @property
    def precision(self) -> float:
        return self.matched / self.detected if self.detected else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.truth if self.truth else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "truth": self.truth,
            "detected": self.detected,
            "matched": self.matched,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "mean_abs_error_s": self.mean_abs_error_s,
            "max_abs_error_s": self.max_abs_error_s,
        }


def _occurrence(record: dict[str, Any]) -> Occurrence:
    return Occurrence(
        type=ViolationType(record["type"]),
        frame=int(record["frame"]),
        camera_id=record.get("camera_id"),
    )


def load_truth(path: Path) -> tuple[list[Occurrence], float | None]:
    """Truth violations, and the fps implied by its ``frame`` records (None if it has none).

    Lines with ``"kind": "violation"`` (or no ``kind`` at all) are violations; other kinds
    (``frame`` records) only serve to measure the frame rate.
    """
    violations: list[Occurrence] = []
    stamps: list[tuple[int, int]] = []
    for record in _read_jsonl(path):
        kind = record.get("kind", "violation")
        if kind == "violation":
            violations.append(_occurrence(record))
        elif "frame" in record and "ts_ms" in record:
            stamps.append((int(record["frame"]), int(record["ts_ms"])))
    return violations, _fps_from(stamps)


def load_events(path: Path) -> list[Occurrence]:
    return [_occurrence(record) for record in _read_jsonl(path)]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON: {exc.msg}") from None
    return records


def _fps_from(stamps: list[tuple[int, int]]) -> float | None:
    if len(stamps) < 2:
        return None
    (f0, t0), (f1, t1) = min(stamps), max(stamps)
    return 1000.0 * (f1 - f0) / (t1 - t0) if f1 > f0 and t1 > t0 else None


def evaluate(
    truth: list[Occurrence],
    detected: list[Occurrence],
    *,
    fps: float,
    tolerance_s: Mapping[ViolationType, float] | None = None,
) -> dict[ViolationType, TypeScore]:
    """Scores per violation type (every type is reported, even with no truth).

    ``tolerance_s`` overrides :data:`TOLERANCE_S` for the types it names.
    """
    tolerances = {**TOLERANCE_S, **(tolerance_s or {})}
    return {
        kind: _score(kind, truth, detected, fps=fps, tolerance=tolerances[kind])
        for kind in ViolationType
    }


def _score(
    kind: ViolationType,
    truth: list[Occurrence],
    detected: list[Occurrence],
    *,
    fps: float,
    tolerance: float,
) -> TypeScore:
    true_ones = [t for t in truth if t.type == kind]
    found = [d for d in detected if d.type == kind]
    pairs = sorted(
        (abs(d.frame - t.frame) / fps, i, j)
        for i, t in enumerate(true_ones)
        for j, d in enumerate(found)
        if abs(d.frame - t.frame) / fps <= tolerance
        and _same_camera(t, d)
        and (t.bbox_xywh is None or d.bbox_xywh is None or same_place(t.bbox_xywh, d.bbox_xywh))
    )
    used_truth: set[int] = set()
    used_found: set[int] = set()
    errors: list[float] = []
    for error, i, j in pairs:
        if i not in used_truth and j not in used_found:
            used_truth.add(i)
            used_found.add(j)
            errors.append(error)
    return TypeScore(
        type=kind,
        truth=len(true_ones),
        detected=len(found),
        matched=len(errors),
        mean_abs_error_s=round(sum(errors) / len(errors), 3) if errors else None,
        max_abs_error_s=round(max(errors), 3) if errors else None,
        missed_frames=tuple(t.frame for i, t in enumerate(true_ones) if i not in used_truth),
        false_alarms=tuple(d for j, d in enumerate(found) if j not in used_found),
    )


def _same_camera(a: Occurrence, b: Occurrence) -> bool:
    return a.camera_id is None or b.camera_id is None or a.camera_id == b.camera_id


def same_place(truth_xywh: BoxXYWH, event_xywh: BoxXYWH) -> bool:
    """Whether an event's box shows the truth's vehicle: the two overlap once each is grown
    by a quarter of its size on every side, and the event's is not over four times the
    truth's area.

    An event's box can be a few frames younger than the crossing it reports (a crossing
    seen as a vehicle came out of a merge), or hold only part of the vehicle (its lit
    front at night), and a hand-drawn box is rough. A vehicle elsewhere in the picture at
    the same moment, or a box round its whole queue, is not its place.

    >>> rider = (100, 100, 40, 80)
    >>> same_place(rider, (130, 150, 40, 80)), same_place(rider, (170, 100, 40, 80))
    (True, False)
    >>> same_place(rider, (0, 60, 400, 200)), same_place(rider, (110, 110, 10, 10))
    (False, True)
    """
    if event_xywh[2] * event_xywh[3] > PLACE_AREA_RATIO * truth_xywh[2] * truth_xywh[3]:
        return False
    grown = [
        grown_box(box, margin_x=PLACE_SLACK * box[2], margin_y=PLACE_SLACK * box[3])
        for box in (truth_xywh, event_xywh)
    ]
    return box_intersection(*grown) > 0
