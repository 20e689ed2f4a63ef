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

from services.common.arrays import BGRImage
from services.common.config.scene import SceneConfig
from services.common.events import ViolationEvent, ViolationType
from services.common.frames import Frame
from services.detector.decode import decode_bgr
from services.detector.drawing import VIOLATION_BGR, draw_geometry, scene_scale

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
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
        scale = scene_scale(scene, image.shape[1])
        crop = vehicle_crop(image, event.bbox_xywh, scale)
        x, y, w, h = (round(v * scale) for v in event.bbox_xywh)

        red_light = event.type == ViolationType.RED_LIGHT
        draw_geometry(image, scene, scale, zones=not red_light, stop_line=red_light)
        cv2.rectangle(image, (x, y), (x + w, y + h), VIOLATION_BGR, 2)

        crop_path = evidence_path(self._root, event, ".jpg")
        crop_path.parent.mkdir(parents=True, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, self._quality]
        cv2.imwrite(str(crop_path), crop if crop is not None else image, params)
        cv2.imwrite(str(evidence_path(self._root, event, "-scene.jpg")), image, params)
        return str(crop_path)


def vehicle_crop(
    image: BGRImage, bbox_xywh: tuple[int, int, int, int], scale: float
) -> BGRImage | None:
    """The vehicle with a margin of context, cut from ``image`` (a copy); ``None`` if the
    box lies outside the image. ``bbox_xywh`` is in scene pixels, ``scale`` maps them."""
    height, width = image.shape[:2]
    x, y, w, h = (round(v * scale) for v in bbox_xywh)
    mx, my = round(w * _CROP_MARGIN), round(h * _CROP_MARGIN)
    crop = image[max(y - my, 0) : min(y + h + my, height), max(x - mx, 0) : min(x + w + mx, width)]
    return crop.copy() if crop.size else None


def evidence_path(root: Path, event: ViolationEvent, suffix: str) -> Path:
    """Where a piece of ``event``'s evidence lives: ``<root>/<camera_id>/<id><suffix>``.

    >>> e = ViolationEvent.create(violation_type=ViolationType.RED_LIGHT, camera_id="c-1",
    ...     city="x", frame=1, ts_ms=5, track_id=2, bbox_xywh=(0, 0, 1, 1), confidence=1.0)
    >>> evidence_path(Path("ev"), e, "-panels.jpg").as_posix()
    'ev/c-1/c-1_red_light_000002_5-panels.jpg'
    """
    return root / event.camera_id / f"{_UNSAFE.sub('_', event.violation_id)}{suffix}"
