"""Evidence snapshots: the I/O edge that turns a violation into two JPEG files.

``<dir>/<camera_id>/<violation_id>.jpg`` is the crop of the vehicle (the event's
``snapshot``) and ``...-scene.jpg`` beside it is the full frame with the stop line or the
no-parking zones and the vehicle's box drawn on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from services.common.config.scene import SceneConfig
from services.common.events import ViolationEvent, ViolationType
from services.common.frames import Frame
from services.detector.decode import decode_bgr

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RED = (0, 0, 255)
_YELLOW = (0, 215, 255)
_GREEN = (0, 200, 0)
# Context around the vehicle in the crop: a plate or a wheel on the line is worth keeping.
_CROP_MARGIN = 0.25


class EvidenceSink(Protocol):
    def save(self, *, event: ViolationEvent, frame: Frame, scene: SceneConfig) -> str | None:
        """Store the evidence for ``event`` seen in ``frame``; returns the snapshot path."""
        ...


class EvidenceWriter:
    """Writes snapshots under ``root``; returns paths as given (relative stays relative)."""

    def __init__(self, root: Path, *, jpeg_quality: int = 90) -> None:
        self._root = root
        self._quality = jpeg_quality

    def save(self, *, event: ViolationEvent, frame: Frame, scene: SceneConfig) -> str | None:
        image = decode_bgr(frame).copy()
        height, width = image.shape[:2]
        scale = _scene_to_image(scene, width)
        x, y, w, h = (round(v * scale) for v in event.bbox_xywh)
        mx, my = round(w * _CROP_MARGIN), round(h * _CROP_MARGIN)
        crop = image[
            max(y - my, 0) : min(y + h + my, height), max(x - mx, 0) : min(x + w + mx, width)
        ]

        _draw_scene(image, scene, event.type, scale)
        cv2.rectangle(image, (x, y), (x + w, y + h), _RED, 2)

        folder = self._root / event.camera_id
        folder.mkdir(parents=True, exist_ok=True)
        stem = _UNSAFE.sub("_", event.violation_id)
        crop_path = folder / f"{stem}.jpg"
        params = [cv2.IMWRITE_JPEG_QUALITY, self._quality]
        cv2.imwrite(str(crop_path), crop if crop.size else image, params)
        cv2.imwrite(str(folder / f"{stem}-scene.jpg"), image, params)
        return str(crop_path)


def _scene_to_image(scene: SceneConfig, image_width: int) -> float:
    return image_width / scene.resolution_wh[0] if scene.resolution_wh else 1.0


def _draw_scene(image: np.ndarray, scene: SceneConfig, kind: ViolationType, scale: float) -> None:
    def pts(points: list[tuple[float, float]]) -> np.ndarray:
        return (np.array(points, np.float64) * scale).round().astype(np.int32)

    if kind == ViolationType.RED_LIGHT and scene.stop_line is not None:
        a, b = pts(list(scene.stop_line.points))
        cv2.line(image, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), _YELLOW, 3)
    if scene.traffic_light is not None:
        rx, ry, rw, rh = (round(v * scale) for v in scene.traffic_light.roi)
        cv2.rectangle(image, (rx, ry), (rx + rw, ry + rh), _GREEN, 1)
    if kind == ViolationType.ILLEGAL_PARKING:
        for zone in scene.no_parking_zones:
            cv2.polylines(image, [pts(zone.polygon)], True, _YELLOW, 2)
