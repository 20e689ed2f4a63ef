"""A tiny synthetic street for detector unit tests: grey road, a 3-lamp head, box vehicles.

Deliberately unlike the project's simulator (flat boxes, a different lamp palette), so that
unit tests exercise the rules rather than one renderer's look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from services.common.config.scene import SceneConfig
from services.common.frames import Frame

WIDTH, HEIGHT, FPS = 640, 360, 10.0
T0_MS = 1_700_000_000_000
ROI = (600, 20, 20, 60)
LIT = {"red": (40, 40, 230), "amber": (0, 190, 255), "green": (90, 220, 60)}


def scene(**overrides: object) -> SceneConfig:
    """The synthetic street: a stop line across the up lane, a zone on the right kerb."""
    data: dict[str, object] = {
        "camera_id": "synth-cam",
        "city": "testville",
        "fps": FPS,
        "resolution_wh": [WIDTH, HEIGHT],
        "traffic_light": {"roi": list(ROI)},
        "stop_line": {"points": [[200, 200], [440, 200]], "travel_direction": [0, -1]},
        "no_parking_zones": [
            {
                "name": "kerb",
                "polygon": [[480, 150], [600, 150], [600, 330], [480, 330]],
                "max_dwell_s": 5,
            }
        ],
    }
    data.update(overrides)
    return SceneConfig.model_validate(data)


@dataclass(frozen=True)
class Vehicle:
    """A box whose top-left corner follows ``path(frame) -> (x, y) | None`` (None: absent)."""

    path: Callable[[int], tuple[float, float] | None]
    size_wh: tuple[int, int] = (40, 64)
    bgr: tuple[int, int, int] = (30, 30, 160)


def straight(
    *,
    start_xy: tuple[float, float],
    velocity_xy: tuple[float, float],
    first: int = 0,
    stop_at: int | None = None,
    stop_for: int = 0,
) -> Callable[[int], tuple[float, float] | None]:
    """Constant velocity from ``first``, optionally standing still ``stop_for`` frames."""

    def path(frame: int) -> tuple[float, float] | None:
        if frame < first:
            return None
        moving = frame - first
        if stop_at is not None and frame >= stop_at:
            moving = (stop_at - first) + max(0, frame - stop_at - stop_for)
        x = start_xy[0] + velocity_xy[0] * moving
        y = start_xy[1] + velocity_xy[1] * moving
        if x > WIDTH or y > HEIGHT or x < -100 or y < -100:
            return None
        return (x, y)

    return path


def parked_from_the_start(*, stand_s: float) -> Vehicle:
    """A car in the kerb zone from the first frame that stands ``stand_s``, then drives up
    and out of the picture."""
    return Vehicle(
        path=straight(
            start_xy=(520, 200),
            velocity_xy=(0, -8),
            stop_at=0,
            stop_for=round(stand_s * FPS),
        ),
        size_wh=(44, 70),
        bgr=(180, 170, 40),
    )


def render(
    frame: int,
    vehicles: list[Vehicle],
    light: Callable[[int], str],
    *,
    noise: float = 3.0,
    seed: int = 0,
) -> np.ndarray:
    rng = np.random.default_rng(seed * 100_003 + frame)
    image = np.full((HEIGHT, WIDTH, 3), 95, np.uint8)
    cv2.rectangle(image, (0, 0), (WIDTH, 60), (140, 150, 150), -1)  # buildings
    cv2.line(image, (200, 200), (440, 200), (235, 235, 235), 3)  # the painted stop line
    x, y, w, h = ROI
    cv2.rectangle(image, (x, y), (x + w, y + h), (25, 25, 25), -1)
    state = light(frame)
    for i, name in enumerate(("red", "amber", "green")):
        colour = LIT[name] if name == state else (55, 55, 55)
        cv2.circle(image, (x + w // 2, y + h // 6 + i * h // 3), 7, colour, -1)
    for vehicle in vehicles:
        corner = vehicle.path(frame)
        if corner is not None:
            vx, vy = round(corner[0]), round(corner[1])
            vw, vh = vehicle.size_wh
            cv2.rectangle(image, (vx, vy), (vx + vw, vy + vh), vehicle.bgr, -1)
            cv2.rectangle(image, (vx + 6, vy + 8), (vx + vw - 6, vy + 20), (200, 210, 220), -1)
    if noise:
        image = cv2.add(image, rng.normal(0, noise, image.shape).clip(0, 255).astype(np.uint8))
    return image


def frames(
    count: int,
    vehicles: list[Vehicle],
    light: Callable[[int], str],
    *,
    jpeg: bool = True,
    noise: float = 3.0,
) -> Iterator[Frame]:
    for index in range(count):
        image = render(index, vehicles, light, noise=noise)
        ts_ms = T0_MS + round(index * 1000 / FPS)
        if jpeg:
            ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
            assert ok
            yield Frame(camera_id="synth-cam", index=index, ts_ms=ts_ms, jpeg=buffer.tobytes())
        else:
            yield Frame(camera_id="synth-cam", index=index, ts_ms=ts_ms, bgr=image)


def cycle(*, red: tuple[int, int]) -> Callable[[int], str]:
    """Red on frames ``[red[0], red[1])``, amber for 2 s before it, green otherwise."""

    def light(frame: int) -> str:
        if red[0] <= frame < red[1]:
            return "red"
        if red[0] - 20 <= frame < red[0]:
            return "amber"
        return "green"

    return light
