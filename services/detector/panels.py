"""Multi-panel evidence images, laid out as enforcement cameras print them.

Each panel is one full frame with the scene drawn on it, the offending vehicle boxed in red
and a stamp of the capture time, the signal state and the frame number. The vehicle crop
follows the panels, and a caption strip names the violation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.common.arrays import BGRImage
from services.common.config.scene import SceneConfig
from services.common.events import ViolationEvent, ViolationType
from services.common.frames import Frame
from services.detector.decode import decode_bgr
from services.detector.drawing import (
    VIOLATION_BGR,
    banner_height,
    clock_text,
    draw_geometry,
    draw_track,
    label,
    scene_scale,
    stamp,
    text_size,
)
from services.detector.evidence import vehicle_crop
from services.detector.result import FrameResult, SeenTrack

# Panels are scaled to this height at most: a 3-panel 1080p sheet stays a few hundred KiB.
MAX_PANEL_HEIGHT = 720
_CAPTION_BGR = (40, 40, 40)


@dataclass(frozen=True, slots=True)
class Panel:
    """One frame of the sheet and the title printed on it."""

    title: str
    frame: Frame
    result: FrameResult
    # The vehicle stands at the event's box in this frame, though no track of it was seen
    # then: one that stood in a zone from the first frame, found only when it left.
    at_event_box: bool = False


def compose_panels(*, scene: SceneConfig, event: ViolationEvent, panels: list[Panel]) -> BGRImage:
    """The sheet: ``panels`` left to right, then the vehicle crop, over a caption strip.

    The crop is cut from the panel whose frame is the event's, else from one that shows the
    vehicle at the event's box, else from the last panel.
    """
    images = [_panel_image(scene, event, panel) for panel in panels]
    height = min(MAX_PANEL_HEIGHT, *(image.shape[0] for image in images))
    tiles = [_to_height(image, height) for image in images]
    source = next(
        (p for p in panels if p.frame.index == event.frame),
        next((p for p in panels if p.at_event_box), panels[-1]),
    )
    full = decode_bgr(source.frame)
    crop = vehicle_crop(full, event.bbox_xywh, scene_scale(scene, full.shape[1]))
    if crop is not None:
        crop_tile = _to_height(crop, height)
        # A long, thin crop (a bus side-on) would dwarf the panels: cap its width.
        crop_tile = crop_tile[:, : tiles[0].shape[1] // 2 + 1]
        label(crop_tile, f"#{event.track_id}", (0, height - 2), VIOLATION_BGR)
        tiles.append(crop_tile)
    sheet = np.hstack(tiles)
    font = text_size(tiles[0])
    caption = np.full((banner_height(1, font), sheet.shape[1], 3), _CAPTION_BGR, np.uint8)
    stamp(
        caption,
        [
            f"{event.type.value}  camera {event.camera_id} ({event.city})  track "
            f"#{event.track_id}  {clock_text(event.ts_ms)}  id {event.violation_id}"
        ],
        font=font,
    )
    return np.vstack([sheet, caption])


def _panel_image(scene: SceneConfig, event: ViolationEvent, panel: Panel) -> BGRImage:
    image = decode_bgr(panel.frame).copy()
    scale = scene_scale(scene, image.shape[1])
    red_light = event.type == ViolationType.RED_LIGHT
    draw_geometry(image, scene, scale, signal=panel.result.signal, zones=not red_light)
    track = panel.result.track(event.track_id)
    if track is None and panel.at_event_box:
        track = SeenTrack(
            track_id=event.track_id, bbox_xywh=event.bbox_xywh, stationary=True, established=True
        )
    if track is not None:
        draw_track(image, track, scale, colour=VIOLATION_BGR)
    result = panel.result
    stamp(
        image,
        [
            panel.title,
            clock_text(result.ts_ms),
            f"signal {result.signal.value.upper()}  frame {result.frame}",
        ],
        signal=result.signal,
    )
    return image


def _to_height(image: BGRImage, height: int) -> BGRImage:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
