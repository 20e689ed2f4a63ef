"""Drawing what the detector saw onto a frame: scene geometry, tracks, labels and stamps.

Shared by the annotated replay video and the evidence images, so that both show the scene
the same way. Everything here draws in place on a BGR image, in scene pixels scaled by
``scale`` (image pixels per scene pixel).
"""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np

from services.common.arrays import BGRImage
from services.common.config.scene import SceneConfig
from services.detector.result import SeenTrack
from services.detector.signal import LightState

BGR = tuple[int, int, int]

SIGNAL_BGR: dict[LightState, BGR] = {
    LightState.RED: (0, 0, 230),
    LightState.AMBER: (0, 190, 255),
    LightState.GREEN: (60, 200, 0),
    LightState.UNKNOWN: (160, 160, 160),
}
ZONE_BGR: BGR = (0, 215, 255)
MOVING_BGR: BGR = (80, 220, 80)
STATIONARY_BGR: BGR = (255, 160, 40)
TENTATIVE_BGR: BGR = (150, 150, 150)
VIOLATION_BGR: BGR = (0, 0, 255)
_WHITE: BGR = (255, 255, 255)
_BLACK: BGR = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def scene_scale(scene: SceneConfig, image_width: int) -> float:
    """Image pixels per scene pixel: scenes may be drawn up at another resolution.

    >>> scene_scale(SceneConfig(camera_id="c", city="x", fps=10, resolution_wh=(1280, 720)), 640)
    0.5
    """
    return image_width / scene.resolution_wh[0] if scene.resolution_wh else 1.0


def line_width(image: BGRImage) -> int:
    """Pixels that stay visible after 4:2:0 video compression (2 at 640 px wide)."""
    return max(2, round(int(image.shape[1]) / 480))


def text_size(image: BGRImage) -> float:
    """A font scale that reads at the image's size (0.5 at 640 px wide)."""
    return max(0.4, int(image.shape[1]) / 1280)


def draw_geometry(
    image: BGRImage,
    scene: SceneConfig,
    scale: float,
    *,
    signal: LightState | None = None,
    zones: bool = True,
    stop_line: bool = True,
) -> None:
    """The no-parking zones, the stop line (coloured by ``signal``) and the light's roi."""

    def pts(points: list[tuple[float, float]]) -> np.ndarray:
        return (np.array(points, np.float64) * scale).round().astype(np.int32)

    thickness = line_width(image)
    if zones:
        for zone in scene.no_parking_zones:
            polygon = pts(zone.polygon)
            cv2.polylines(image, [polygon], True, ZONE_BGR, thickness)
            x, y = int(polygon[:, 0].min()), int(polygon[:, 1].min())
            label(image, zone.name, (x, y), ZONE_BGR)
    state = signal or LightState.UNKNOWN
    if stop_line and scene.stop_line is not None:
        a, b = pts(list(scene.stop_line.points))
        line_bgr = SIGNAL_BGR[state] if signal is not None else ZONE_BGR
        cv2.line(image, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), line_bgr, thickness + 1)
        # The lawful direction, as an arrow from the line's middle.
        mid = (a + b) / 2
        dx, dy = scene.stop_line.travel_direction
        norm = max(float(np.hypot(dx, dy)), 1e-9)
        length = 0.08 * image.shape[1]
        tip = mid + np.array([dx, dy]) / norm * length
        cv2.arrowedLine(
            image,
            (int(mid[0]), int(mid[1])),
            (int(tip[0]), int(tip[1])),
            line_bgr,
            thickness,
            tipLength=0.25,
        )
    if scene.traffic_light is not None:
        rx, ry, rw, rh = (round(v * scale) for v in scene.traffic_light.roi)
        cv2.rectangle(image, (rx, ry), (rx + rw, ry + rh), SIGNAL_BGR[state], thickness)


def draw_track(
    image: BGRImage, track: SeenTrack, scale: float, *, colour: BGR, text: str | None = None
) -> None:
    """The track's box and a label with its id (and ``text``, when given)."""
    x, y, w, h = (round(v * scale) for v in track.bbox_xywh)
    thickness = line_width(image) + (1 if colour == VIOLATION_BGR else 0)
    cv2.rectangle(image, (x, y), (x + w, y + h), colour, thickness)
    caption = f"#{track.track_id}" + (f" {text}" if text else "")
    label(image, caption, (x, y), colour)


def track_colour(track: SeenTrack) -> BGR:
    """Green while moving, blue standing still, grey while not yet a vehicle."""
    if not track.established and not track.stationary:
        return TENTATIVE_BGR
    return STATIONARY_BGR if track.stationary else MOVING_BGR


def label(image: BGRImage, text: str, bottom_left: tuple[int, int], colour: BGR) -> None:
    """``text`` on a filled box of ``colour`` whose bottom-left corner is ``bottom_left``."""
    font = 0.8 * text_size(image)
    (tw, th), base = cv2.getTextSize(text, _FONT, font, 1)
    x = min(max(bottom_left[0], 0), max(image.shape[1] - tw - 2, 0))
    y = max(bottom_left[1], th + base + 2)
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 2, y), colour, -1)
    ink = _BLACK if sum(colour) > 380 else _WHITE
    cv2.putText(image, text, (x + 1, y - base), _FONT, font, ink, 1, cv2.LINE_AA)


def stamp(
    image: BGRImage,
    lines: list[str],
    *,
    signal: LightState | None = None,
    font: float | None = None,
) -> None:
    """A banner across the top left: one line each, a lamp in the signal's colour first.

    ``font`` defaults to :func:`text_size`; the banner takes ``banner_height`` rows."""
    font = font or text_size(image)
    pitch = int(cv2.getTextSize("Ag", _FONT, font, 1)[0][1] * 1.8)
    width = max(cv2.getTextSize(line, _FONT, font, 1)[0][0] for line in lines)
    lamp = pitch if signal is not None else 0
    overlay = image[0 : banner_height(len(lines), font), 0 : width + lamp + 16]
    overlay[:] = (overlay.astype(np.uint16) // 3).astype(np.uint8)
    if signal is not None:
        centre = (lamp // 2 + 6, pitch // 2 + 4)
        cv2.circle(image, centre, max(lamp // 2 - 2, 2), SIGNAL_BGR[signal], -1, cv2.LINE_AA)
    for row, line in enumerate(lines):
        y = pitch * (row + 1)
        cv2.putText(image, line, (lamp + 10, y), _FONT, font, _WHITE, 1, cv2.LINE_AA)


def banner_height(lines: int, font: float) -> int:
    """The rows a :func:`stamp` of ``lines`` lines at ``font`` covers."""
    pitch = int(cv2.getTextSize("Ag", _FONT, font, 1)[0][1] * 1.8)
    return pitch * lines + pitch // 2


def clock_text(ts_ms: int) -> str:
    """A capture time as a person reads it, in UTC to the millisecond.

    >>> clock_text(1_700_000_000_123)
    '2023-11-14 22:13:20.123 UTC'
    """
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts_ms % 1000:03d} UTC"
