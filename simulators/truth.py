"""Ground truth: per-frame vehicle boxes and every violation, under the contracts' rules.

The rules are applied to the integer boxes the frames show, at the resolution they are drawn,
so the truth is what a perfect detector would report from the pixels:

- **red_light:** the box centre is past the stop-line segment (in ``travel_direction``) in
  frame ``f`` and was not in frame ``f - 1``, and the light shows red in frame ``f``. One
  event per vehicle; ``frame`` is ``f``.
- **illegal_parking:** a stay is a run of frames in which the vehicle's box does not change
  and its centre lies inside a zone; it starts at the first frame of the run. The event is at
  the first frame ``f`` with ``(f - start) / fps >= max_dwell_s``, once per stay.

``truth.jsonl`` holds one JSON object per line: ``{"kind": "frame", ...}`` for every frame
index (dropped and corrupt ones marked) and ``{"kind": "violation", ...}`` for every event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from services.common.config.scene import SceneConfig
from services.common.events import ViolationType

BoxXYWH = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class TruthBox:
    vehicle_id: int
    bbox_xywh: BoxXYWH

    @property
    def centre_xy(self) -> tuple[float, float]:
        x, y, w, h = self.bbox_xywh
        return (x + w / 2, y + h / 2)


@dataclass(frozen=True, slots=True)
class FrameTruth:
    """What frame ``frame`` shows; ``light`` is the signal state (None without a signal)."""

    frame: int
    ts_ms: int
    boxes: tuple[TruthBox, ...]
    light: str | None = None
    dropped: bool = False
    corrupt: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": "frame",
            "frame": self.frame,
            "ts_ms": self.ts_ms,
            "dropped": self.dropped,
            "corrupt": self.corrupt,
            "light": self.light,
            "boxes": [
                {"vehicle_id": b.vehicle_id, "bbox_xywh": list(b.bbox_xywh)} for b in self.boxes
            ],
        }


@dataclass(frozen=True, slots=True)
class TruthViolation:
    type: ViolationType
    camera_id: str
    vehicle_id: int
    frame: int
    ts_ms: int
    bbox_xywh: BoxXYWH

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": "violation",
            "type": self.type.value,
            "camera_id": self.camera_id,
            "vehicle_id": self.vehicle_id,
            "frame": self.frame,
            "ts_ms": self.ts_ms,
            "bbox_xywh": list(self.bbox_xywh),
        }


@dataclass(frozen=True, slots=True)
class Truth:
    violations: list[TruthViolation]
    frames: list[FrameTruth]


def find_violations(scene: SceneConfig, frames: Sequence[FrameTruth]) -> list[TruthViolation]:
    """Every violation in ``frames`` (consecutive, from index 0), ordered by frame."""
    found = _red_light(scene, frames) + _parking(scene, frames)
    return sorted(found, key=lambda v: (v.frame, v.vehicle_id, v.type.value))


def _event(
    scene: SceneConfig, kind: ViolationType, frame: FrameTruth, box: TruthBox
) -> TruthViolation:
    return TruthViolation(
        type=kind,
        camera_id=scene.camera_id,
        vehicle_id=box.vehicle_id,
        frame=frame.frame,
        ts_ms=frame.ts_ms,
        bbox_xywh=box.bbox_xywh,
    )


def _red_light(scene: SceneConfig, frames: Sequence[FrameTruth]) -> list[TruthViolation]:
    if scene.stop_line is None:
        return []
    (ax, ay), (bx, by) = scene.stop_line.points
    dx, dy = scene.stop_line.travel_direction
    norm = math.hypot(dx, dy)
    seg_len = math.hypot(bx - ax, by - ay)
    ux, uy = (bx - ax) / seg_len, (by - ay) / seg_len

    def past_and_on_segment(centre: tuple[float, float]) -> tuple[bool, bool]:
        rx, ry = centre[0] - ax, centre[1] - ay
        along_segment = rx * ux + ry * uy
        return (rx * dx + ry * dy) / norm > 0, 0 <= along_segment <= seg_len

    events: list[TruthViolation] = []
    was_past: dict[int, bool] = {}
    reported: set[int] = set()
    for frame in frames:
        for box in frame.boxes:
            past, on_segment = past_and_on_segment(box.centre_xy)
            crossed = past and was_past.get(box.vehicle_id) is False and on_segment
            if crossed and frame.light == "red" and box.vehicle_id not in reported:
                reported.add(box.vehicle_id)
                events.append(_event(scene, ViolationType.RED_LIGHT, frame, box))
            was_past[box.vehicle_id] = past
    return events


def _parking(scene: SceneConfig, frames: Sequence[FrameTruth]) -> list[TruthViolation]:
    zones = [
        (np.array(zone.polygon, dtype=np.float32), zone.max_dwell_s)
        for zone in scene.no_parking_zones
    ]
    if not zones:
        return []
    events: list[TruthViolation] = []
    # vehicle -> (box, first frame of the stay, dwell frames needed, reported?)
    stays: dict[int, tuple[BoxXYWH, int, int | None, bool]] = {}
    for frame in frames:
        for box in frame.boxes:
            previous = stays.get(box.vehicle_id)
            if previous is not None and previous[0] == box.bbox_xywh:
                _, start, needed, reported = previous
            else:
                start, needed, reported = frame.frame, _needed_frames(zones, box, scene.fps), False
            if needed is not None and not reported and frame.frame - start >= needed:
                reported = True
                events.append(_event(scene, ViolationType.ILLEGAL_PARKING, frame, box))
            stays[box.vehicle_id] = (box.bbox_xywh, start, needed, reported)
    return events


def _needed_frames(
    zones: list[tuple[np.ndarray[Any, Any], float]], box: TruthBox, fps: float
) -> int | None:
    """Frames of stillness that make a violation, or None if the centre is in no zone."""
    for polygon, max_dwell_s in zones:
        if cv2.pointPolygonTest(polygon, box.centre_xy, False) >= 0:
            # The epsilon keeps 12 s * 10 fps at 120 frames despite float rounding.
            return math.ceil(max_dwell_s * fps - 1e-6)
    return None


def write_truth(path: Path, truth: Truth) -> None:
    """Write ``truth.jsonl``: frame records in order, then the violations."""
    records: Iterable[dict[str, Any]] = [f.to_json_dict() for f in truth.frames] + [
        v.to_json_dict() for v in truth.violations
    ]
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


def load_truth(path: Path | str) -> Truth:
    """Read a ``truth.jsonl`` written by :func:`write_truth` (or by ``citybrain simulate``)."""
    violations: list[TruthViolation] = []
    frames: list[FrameTruth] = []
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["kind"] == "violation":
                violations.append(
                    TruthViolation(
                        type=ViolationType(record["type"]),
                        camera_id=record["camera_id"],
                        vehicle_id=record["vehicle_id"],
                        frame=record["frame"],
                        ts_ms=record["ts_ms"],
                        bbox_xywh=_xywh(record["bbox_xywh"]),
                    )
                )
            elif record["kind"] == "frame":
                frames.append(
                    FrameTruth(
                        frame=record["frame"],
                        ts_ms=record["ts_ms"],
                        dropped=record["dropped"],
                        corrupt=record["corrupt"],
                        light=record.get("light"),
                        boxes=tuple(
                            TruthBox(vehicle_id=b["vehicle_id"], bbox_xywh=_xywh(b["bbox_xywh"]))
                            for b in record["boxes"]
                        ),
                    )
                )
    return Truth(violations=violations, frames=frames)


def _xywh(values: Sequence[int]) -> BoxXYWH:
    x, y, w, h = (int(v) for v in values)
    return (x, y, w, h)
