"""Draw frames of a simulated fixed camera, at any resolution, in several looks (variants).

A frame costs one copy of a pre-rendered background plus a few ``cv2`` rectangles per
vehicle, and a variant adds at most one more full-frame pass (rain tile, illumination LUT).
The view is top-down: lanes, stop line and crossings, kerbs and bays as road paint; vehicles
as shaded bodies with glass, lights and a shadow.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from services.common.arrays import BGRImage
from services.common.config.scene import LampLayout, SceneConfig
from simulators.layout import NATIVE_WH, IntersectionLayout, Layout, StreetLayout
from simulators.traffic import Phase, Placed, VehicleKind

VARIANTS = (
    "day",
    "dusk",
    "night",
    "rain",
    "drift",
    "shake",
    "jpeg",
    "led",
    "led_horizontal",
    "exposure",
    "nightfall",
)
# Real junctions often have small LED heads whose lit lamp blooms over its neighbours; these
# variants draw one (vertical or horizontal) and hand the detector a roi that fits it tightly.
LED_VARIANTS = frozenset({"led", "led_horizontal"})
# The quality the ``jpeg`` variant encodes at: blocky enough to hurt a naive detector.
HEAVY_JPEG_QUALITY = 10

Colour = tuple[int, int, int]
RectXYXY = tuple[float, float, float, float]

# Per-channel (B, G, R) light level of each look; vehicles and road share it.
_LIGHT: dict[str, tuple[float, float, float]] = {
    "day": (1.0, 1.0, 1.0),
    "dusk": (0.5, 0.58, 0.78),
    "night": (0.3, 0.24, 0.22),
    "rain": (0.8, 0.76, 0.72),
    "drift": (1.0, 1.0, 1.0),
    "shake": (1.0, 1.0, 1.0),
    "jpeg": (1.0, 1.0, 1.0),
    "led": (1.0, 1.0, 1.0),
    "led_horizontal": (1.0, 1.0, 1.0),
    "exposure": (1.0, 1.0, 1.0),
    "nightfall": (1.0, 1.0, 1.0),
}
_HEADLIGHTS_ON = frozenset({"dusk", "night", "rain"})
# The ``nightfall`` look: the light falls from day's level to dusk's over _NIGHTFALL_S (and
# then stays there), and drivers switch their headlights on once it is below
# _NIGHTFALL_HEADLIGHTS of day's.
_NIGHTFALL_S = 60.0
_NIGHTFALL_HEADLIGHTS = 0.8
_ASPHALT: Colour = (84, 86, 88)
_PARKING_ASPHALT: Colour = (96, 98, 100)
_PAVEMENT: Colour = (170, 176, 180)
_PAINT: Colour = (225, 225, 225)
_YELLOW: Colour = (40, 185, 225)
_GLASS: Colour = (70, 58, 50)
_RIDER: Colour = (60, 70, 95)
_TWO_WHEELERS = frozenset({VehicleKind.MOTORBIKE, VehicleKind.BICYCLE})
_LAMP_LIT: dict[Phase, Colour] = {
    Phase.RED: (40, 40, 255),
    Phase.AMBER: (0, 190, 255),
    Phase.GREEN: (90, 255, 60),
}
_LAMP_UNLIT: Colour = (34, 34, 40)
# A 9x23 px head at 1920x1080 (the smallest seen on real footage), in native pixels.
_LED_HEAD_WH = (6, 15)
# An unlit LED lamp still shows a dull tint of its own colour (the lens, a little sunlight).
_LED_PHANTOM = 0.25
# Auto-exposure: the whole picture steps through these gains, holding each for
# _EXPOSURE_HOLD_S and moving to the next over _EXPOSURE_RAMP_FRAMES frames.
_EXPOSURE_GAINS = (1.0, 0.62, 1.0, 1.4)
_EXPOSURE_HOLD_S = 6.0
_EXPOSURE_RAMP_FRAMES = 3
_LAMP_ORDER = (Phase.RED, Phase.AMBER, Phase.GREEN)
_RAIN_TILES = 6
# Looks whose frames equal the background wherever no vehicle or lamp is drawn; the others
# (rain, drift, shake, jpeg) change every pixel of every frame.
STATIC_VARIANTS = frozenset({"day", "dusk", "night"})
# A vehicle's shadow is drawn this far (native px) right of and below its body.
_SHADOW_DXY = (4, 5)
_DRIFT_PERIOD_S = 40.0
_DRIFT_AMPLITUDE = 0.3


def _scale_colour(colour: Colour, light: Sequence[float]) -> Colour:
    return (
        min(int(colour[0] * light[0]), 255),
        min(int(colour[1] * light[1]), 255),
        min(int(colour[2] * light[2]), 255),
    )


def _shade(colour: Colour, factor: float, lift: int = 0) -> Colour:
    return (
        min(int(colour[0] * factor) + lift, 255),
        min(int(colour[1] * factor) + lift, 255),
        min(int(colour[2] * factor) + lift, 255),
    )


@dataclass(frozen=True, slots=True)
class _Canvas:
    """Maps native (1280x720) coordinates to the output resolution."""

    sx: float
    sy: float

    def pt(self, x: float, y: float) -> tuple[int, int]:
        return (round(x * self.sx), round(y * self.sy))

    def rect(self, img: BGRImage, xyxy: RectXYXY, colour: Colour, thickness: int = -1) -> None:
        x0, y0 = self.pt(xyxy[0], xyxy[1])
        x1, y1 = self.pt(xyxy[2], xyxy[3])
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)


class Renderer:
    """Draws one camera's frames at ``resolution_wh`` in one ``variant``.

    >>> from simulators.feed import load_camera_setup
    >>> setup = load_camera_setup("wuzhen-cam-01")
    >>> renderer = Renderer(setup.scene, setup.layout, resolution_wh=(640, 360), variant="night")
    >>> renderer.render(0, [], Phase.RED).shape
    (360, 640, 3)
    """

    def __init__(
        self,
        scene: SceneConfig,
        layout: Layout,
        *,
        resolution_wh: tuple[int, int],
        variant: str,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        self.scene = _led_scene(scene, variant) if variant in LED_VARIANTS else scene
        self.layout = layout
        self.resolution_wh = resolution_wh
        self.variant = variant
        self.seed = seed
        self.canvas = _Canvas(resolution_wh[0] / NATIVE_WH[0], resolution_wh[1] / NATIVE_WH[1])
        self.light = _LIGHT[variant]
        # What the last render_reused() drew over the background in its scratch image.
        self._scratch_damage: list[tuple[int, int, int, int]] = []
        self._horizontal = (
            self.scene.traffic_light is not None
            and self.scene.traffic_light.layout is LampLayout.HORIZONTAL
        )

    # -- precomputed once per renderer ---------------------------------------------------------

    @cached_property
    def background(self) -> BGRImage:
        """The empty scene in this variant's light, with unlit signal lamps."""
        width, height = self.resolution_wh
        img = np.empty((height, width, 3), np.uint8)
        img[:] = (112, 118, 124)
        if isinstance(self.layout, IntersectionLayout):
            _draw_intersection(img, self.canvas, self.layout)
        else:
            _draw_street(img, self.canvas, self.layout)
        # Low-frequency mottling looks like worn asphalt; per-pixel noise would look the same
        # at a glance but make every JPEG of the background twice as costly to encode.
        coarse = np.random.default_rng(self.seed).normal(0, 5, (height // 8 + 1, width // 8 + 1))
        texture = cv2.resize(coarse.astype(np.float32), (width, height))[:, :, None]
        img = np.clip(img * np.array(self.light) + texture, 0, 255).astype(np.uint8)
        if self.variant == "night":
            img = _add_street_lamps(img, self.canvas, self.layout)
        if self.scene.traffic_light is not None:
            self._draw_signal_housing(img)
        return img

    @cached_property
    def _padded_background(self) -> BGRImage:
        """The background with a one-pixel border, so a shaken frame is a shifted slice."""
        return _u8(cv2.copyMakeBorder(self.background, 1, 1, 1, 1, cv2.BORDER_REPLICATE))

    @cached_property
    def _rain_tiles(self) -> list[BGRImage]:
        rng = np.random.default_rng(self.seed + 1)
        width, height = self.resolution_wh
        tiles = []
        for _ in range(_RAIN_TILES):
            tile = np.abs(rng.normal(0, 5, (height, width, 3))).astype(np.uint8)
            for _ in range(width * height // 4000):
                x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
                length = int(rng.integers(8, 24) * self.canvas.sy + 2)
                cv2.line(tile, (x, y), (x - length // 4, y + length), (70, 70, 70), 1)
            tiles.append(tile)
        return tiles

    # -- per frame -------------------------------------------------------------------------------

    def render(self, frame_index: int, placed: Sequence[Placed], phase: Phase | None) -> BGRImage:
        """The frame showing ``placed`` vehicles and the signal in ``phase``."""
        offset = (0, 0)
        light, lamp_gain = self.light, 1.0
        if self.variant == "shake":
            offset = _shake_offset(self.seed, frame_index)
            width, height = self.resolution_wh
            x0, y0 = 1 - offset[0], 1 - offset[1]
            img = self._padded_background[y0 : y0 + height, x0 : x0 + width].copy()
        elif self.variant == "drift":
            gain = 1 + _DRIFT_AMPLITUDE * math.sin(
                2 * math.pi * frame_index / (self.scene.fps * _DRIFT_PERIOD_S)
            )
            lut = np.clip(np.arange(256) * gain, 0, 255).astype(np.uint8)
            img = _u8(cv2.LUT(self.background, lut))
            light, lamp_gain = _lit(self.light, gain), gain
        elif self.variant == "nightfall":
            light = nightfall_light(frame_index, fps=self.scene.fps)
            img = _u8(cv2.multiply(self.background, (*light, 0.0)))
        else:
            img = self.background.copy()
        return self._draw(
            img, frame_index, placed, phase, offset=offset, light=light, lamp_gain=lamp_gain
        )

    def render_reused(
        self, frame_index: int, placed: Sequence[Placed], phase: Phase | None
    ) -> tuple[BGRImage, list[tuple[int, int, int, int]]]:
        """The same picture as ``render`` and its ``damage_xyxy``, for a static variant only.

        The picture is drawn into one scratch image that the next call reuses (so use it
        before then): only the previous frame's damage is restored from the background,
        instead of copying the whole background for every frame.
        """
        damage = self.damage_xyxy(placed, phase)
        if damage is None:
            raise ValueError(f"variant {self.variant!r} changes every pixel; use render()")
        scratch, background = self._scratch, self.background
        height, width = background.shape[:2]
        for x0, y0, x1, y1 in self._scratch_damage:
            rows, cols = slice(max(y0, 0), min(y1, height)), slice(max(x0, 0), min(x1, width))
            scratch[rows, cols] = background[rows, cols]
        self._draw(
            scratch, frame_index, placed, phase, offset=(0, 0), light=self.light, lamp_gain=1.0
        )
        self._scratch_damage = damage
        return scratch, damage

    @cached_property
    def _scratch(self) -> BGRImage:
        return self.background.copy()

    def _draw(
        self,
        img: BGRImage,
        frame_index: int,
        placed: Sequence[Placed],
        phase: Phase | None,
        *,
        offset: tuple[int, int],
        light: tuple[float, float, float],
        lamp_gain: float,
    ) -> BGRImage:
        """Vehicles in ``light`` and lamps at ``lamp_gain`` on ``img``, a (shaken or dimmed)
        background, then what the lens adds: ``img`` itself for a static variant, else
        possibly a new image."""
        headlights = self.variant in _HEADLIGHTS_ON or (
            self.variant == "nightfall" and min(light) < _NIGHTFALL_HEADLIGHTS
        )
        painter = _VehiclePainter(img, self.canvas, light, offset, headlights)
        if self.variant == "night":
            for vehicle in placed:
                painter.beam(vehicle)
        for vehicle in placed:
            painter.shadow(vehicle)
        for vehicle in placed:
            painter.body(vehicle)
        if phase is not None and self.variant in LED_VARIANTS:
            self._draw_led(img, phase)
        elif phase is not None:
            self._draw_lamps(img, phase, offset, lamp_gain)
        return self._through_the_lens(img, frame_index)

    def _through_the_lens(self, img: BGRImage, frame_index: int) -> BGRImage:
        """What happens between the scene and the picture: rain on the lens, auto-exposure."""
        if self.variant == "rain":
            tile = self._rain_tiles[(frame_index * 7 + self.seed) % _RAIN_TILES]
            cv2.add(img, tile, dst=img)
        if self.variant == "exposure":
            exposure = exposure_gain(frame_index, fps=self.scene.fps)
            if exposure != 1.0:
                lut = np.clip(np.arange(256) * exposure, 0, 255).astype(np.uint8)
                img = _u8(cv2.LUT(img, lut))
        return img

    def damage_xyxy(
        self, placed: Sequence[Placed], phase: Phase | None
    ) -> list[tuple[int, int, int, int]] | None:
        """Pixel rectangles (x0, y0, x1, y1, end-exclusive) outside which ``render`` leaves the
        background untouched; None when the variant changes the whole frame."""
        if self.variant not in STATIC_VARIANTS:
            return None
        # One pixel more on each side than drawn covers rounding and anti-aliased edges.
        c, rects = self.canvas, []
        for vehicle in placed:
            x0, y0, x1, y1 = vehicle.box_xyxy
            # The body and its shadow.
            x1, y1 = x1 + _SHADOW_DXY[0], y1 + _SHADOW_DXY[1]
            if self.variant == "night":
                x0, y0, x1, y1 = _beam_bounds(vehicle, (x0, y0, x1, y1))
            rects.append(
                (
                    math.floor(x0 * c.sx) - 1,
                    math.floor(y0 * c.sy) - 1,
                    math.ceil(x1 * c.sx) + 1,
                    math.ceil(y1 * c.sy) + 1,
                )
            )
        if phase is not None:
            (cx, cy), radius = self._lamp_geometry()[_LAMP_ORDER.index(phase)]
            rects.append((cx - radius - 2, cy - radius - 2, cx + radius + 3, cy + radius + 3))
        return rects

    def _lamp_geometry(self) -> list[tuple[tuple[int, int], int]]:
        """Each lamp's centre and radius in output pixels, red first."""
        assert self.scene.traffic_light is not None
        x, y, w, h = self.scene.traffic_light.roi
        across, along = (h, w) if self._horizontal else (w, h)
        fill = 0.42 if self.variant in LED_VARIANTS else 0.36
        radius = max(round(min(across, along / 3) * fill * min(self.canvas.sx, self.canvas.sy)), 2)
        if self._horizontal:
            return [(self.canvas.pt(x + w * (2 * i + 1) / 6, y + h / 2), radius) for i in range(3)]
        return [(self.canvas.pt(x + w / 2, y + h * (2 * i + 1) / 6), radius) for i in range(3)]

    def _draw_signal_housing(self, img: BGRImage) -> None:
        assert self.scene.traffic_light is not None
        x, y, w, h = self.scene.traffic_light.roi
        c = self.canvas
        c.rect(
            img, (x + w / 2 - 3, y + h, x + w / 2 + 3, min(y + h + 120, NATIVE_WH[1])), (60, 60, 60)
        )
        if self.variant in LED_VARIANTS:
            c.rect(img, (x, y, x + w, y + h), (14, 14, 14))
            for (centre, radius), phase in zip(self._lamp_geometry(), _LAMP_ORDER, strict=True):
                phantom = _shade(_LAMP_LIT[phase], _LED_PHANTOM, 18)
                cv2.circle(img, centre, radius, phantom, -1, cv2.LINE_AA)
            return
        c.rect(img, (x + 2, y + 2, x + w - 2, y + h - 2), (22, 22, 22))
        for centre, radius in self._lamp_geometry():
            cv2.circle(img, centre, radius, _LAMP_UNLIT, -1, cv2.LINE_AA)

    @cached_property
    def _led_blooms(self) -> dict[Phase, tuple[int, int, BGRImage]]:
        """Per phase, the lit lamp's bloom as a patch to add at (x, y) of the frame."""
        blooms = {}
        for ((cx, cy), radius), phase in zip(self._lamp_geometry(), _LAMP_ORDER, strict=True):
            reach = radius * 4
            size = 2 * reach + 1
            glow = np.zeros((size, size), np.float32)
            cv2.circle(glow, (reach, reach), radius, 1.0, -1, cv2.LINE_AA)
            glow = np.asarray(cv2.GaussianBlur(glow, (0, 0), sigmaX=radius * 1.1), np.float32)
            glow *= 1.0 / max(float(glow.max()), 1e-6)
            colour = np.array(_LAMP_LIT[phase], np.float32)
            patch = np.clip(glow[:, :, None] * colour * 1.3, 0, 255).astype(np.uint8)
            blooms[phase] = (cx - reach, cy - reach, patch)
        return blooms

    def _draw_led(self, img: BGRImage, phase: Phase) -> None:
        """The lit lamp: a halo over the head and a core washed out towards white."""
        x0, y0, patch = self._led_blooms[phase]
        height, width = img.shape[:2]
        px0, py0 = max(-x0, 0), max(-y0, 0)
        px1 = min(patch.shape[1], width - x0)
        py1 = min(patch.shape[0], height - y0)
        if px1 > px0 and py1 > py0:
            region = img[y0 + py0 : y0 + py1, x0 + px0 : x0 + px1]
            cv2.add(region, patch[py0:py1, px0:px1], dst=region)
        (cx, cy), radius = self._lamp_geometry()[_LAMP_ORDER.index(phase)]
        core = _shade(_LAMP_LIT[phase], 0.55, 110)
        cv2.circle(img, (cx, cy), max(radius - 1, 1), core, -1, cv2.LINE_AA)

    def _draw_lamps(
        self, img: BGRImage, phase: Phase, offset: tuple[int, int], gain: float
    ) -> None:
        # The lamps are the light sources, so they ignore the scene's light level.
        lit = _shade(_LAMP_LIT[phase], min(gain, 1.0))
        (cx, cy), radius = self._lamp_geometry()[_LAMP_ORDER.index(phase)]
        cv2.circle(img, (cx + offset[0], cy + offset[1]), radius, lit, -1, cv2.LINE_AA)


def _beam_bounds(vehicle: Placed, rect: RectXYXY) -> RectXYXY:
    """``rect`` grown to hold the vehicle's night beam, as ``_VehiclePainter.beam`` draws it:
    up to 0.9 body lengths ahead, 10 px wider than the body on each side."""
    bx0, by0, bx1, by1 = vehicle.box_xyxy
    reach = 0.9 * max(bx1 - bx0, by1 - by0) + 1
    dx, dy = vehicle.heading
    x0, y0, x1, y1 = rect
    if dx == 0:
        x0, x1 = x0 - 10, x1 + 10
        y0, y1 = (y0 - reach, y1) if dy < 0 else (y0, y1 + reach)
    else:
        y0, y1 = y0 - 10, y1 + 10
        x0, x1 = (x0 - reach, x1) if dx < 0 else (x0, x1 + reach)
    return (x0, y0, x1, y1)


def nightfall_light(frame_index: int, *, fps: float) -> tuple[float, float, float]:
    """The ``nightfall`` look's (B, G, R) light level at a frame: day's at the first, falling
    evenly to dusk's over ``_NIGHTFALL_S``.

    >>> [tuple(round(c, 2) for c in nightfall_light(i, fps=10)) for i in (0, 300, 900)]
    [(1.0, 1.0, 1.0), (0.75, 0.79, 0.89), (0.5, 0.58, 0.78)]
    """
    share = min(frame_index / (fps * _NIGHTFALL_S), 1.0)
    day, dusk = _LIGHT["day"], _LIGHT["dusk"]
    return _lit(day, 1.0 - share, plus=_lit(dusk, share))


def _lit(
    light: tuple[float, float, float],
    gain: float,
    *,
    plus: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> tuple[float, float, float]:
    """``light`` times ``gain``, plus ``plus``, channel by channel."""
    return (
        light[0] * gain + plus[0],
        light[1] * gain + plus[1],
        light[2] * gain + plus[2],
    )


def exposure_gain(frame_index: int, *, fps: float) -> float:
    """The ``exposure`` variant's picture gain at a frame: steps that land within a few frames.

    >>> [round(exposure_gain(i, fps=10), 2) for i in (0, 59, 60, 61, 62, 63)]
    [1.0, 1.0, 0.87, 0.75, 0.62, 0.62]
    """
    hold = max(round(_EXPOSURE_HOLD_S * fps), _EXPOSURE_RAMP_FRAMES + 1)
    step, into = divmod(frame_index, hold)
    target = _EXPOSURE_GAINS[step % len(_EXPOSURE_GAINS)]
    if step == 0 or into >= _EXPOSURE_RAMP_FRAMES:
        return target
    before = _EXPOSURE_GAINS[(step - 1) % len(_EXPOSURE_GAINS)]
    return before + (target - before) * (into + 1) / _EXPOSURE_RAMP_FRAMES


def _led_scene(scene: SceneConfig, variant: str) -> SceneConfig:
    """The scene with its roi shrunk to a small LED head at the top of the old one."""
    if scene.traffic_light is None:
        return scene
    x, y, w, _ = scene.traffic_light.roi
    head_w, head_h = _LED_HEAD_WH
    horizontal = variant == "led_horizontal"
    if horizontal:
        head_w, head_h = head_h, head_w
    light = scene.traffic_light.model_copy(
        update={
            "roi": (x + (w - head_w) // 2, y + 10, head_w, head_h),
            "layout": LampLayout.HORIZONTAL if horizontal else LampLayout.VERTICAL,
        }
    )
    return scene.model_copy(update={"traffic_light": light})


def _u8(img: object) -> BGRImage:
    """cv2 returns loosely typed arrays; this pins the dtype without copying."""
    return np.asarray(img, dtype=np.uint8)


def _shake_offset(seed: int, frame_index: int) -> tuple[int, int]:
    rng = random.Random(seed * 1_000_003 + frame_index)
    return (rng.randint(-1, 1), rng.randint(-1, 1))


class _VehiclePainter:
    """Draws vehicles, top-down, facing their heading."""

    def __init__(
        self,
        img: BGRImage,
        canvas: _Canvas,
        light: Sequence[float],
        offset: tuple[int, int],
        headlights: bool,
    ) -> None:
        self.img = img
        self.canvas = canvas
        self.light = light
        self.offset = offset
        self.headlights = headlights

    def _box(self, vehicle: Placed) -> RectXYXY:
        x0, y0, x1, y1 = vehicle.box_xyxy
        ox, oy = self.offset[0] / self.canvas.sx, self.offset[1] / self.canvas.sy
        return (x0 + ox, y0 + oy, x1 + ox, y1 + oy)

    def _part(self, vehicle: Placed, from_front: float, to_front: float, inset: float) -> RectXYXY:
        """A band of the body between two fractions of its length, measured from the front."""
        x0, y0, x1, y1 = self._box(vehicle)
        dx, dy = vehicle.heading
        if dx == 0:
            margin = (x1 - x0) * inset
            top, bottom = (y0, y1) if dy < 0 else (y1, y0)
            a, b = top + (bottom - top) * from_front, top + (bottom - top) * to_front
            return (x0 + margin, min(a, b), x1 - margin, max(a, b))
        margin = (y1 - y0) * inset
        left, right = (x1, x0) if dx > 0 else (x0, x1)
        a, b = left + (right - left) * from_front, left + (right - left) * to_front
        return (min(a, b), y0 + margin, max(a, b), y1 - margin)

    def _fill(self, rect: RectXYXY, colour: Colour, *, lit: bool = False) -> None:
        self.canvas.rect(self.img, rect, colour if lit else _scale_colour(colour, self.light))

    def beam(self, vehicle: Placed) -> None:
        """The pool of light ahead of a vehicle at night."""
        x0, y0, x1, y1 = self._box(vehicle)
        dx, dy = vehicle.heading
        reach = 0.9 * max(x1 - x0, y1 - y0)
        if dx == 0:
            edge = y0 if dy < 0 else y1
            far = edge + dy * reach
            poly = [(x0 + 4, edge), (x1 - 4, edge), (x1 + 10, far), (x0 - 10, far)]
        else:
            edge = x1 if dx > 0 else x0
            far = edge + dx * reach
            poly = [(edge, y0 + 4), (edge, y1 - 4), (far, y1 + 10), (far, y0 - 10)]
        points = np.array([self.canvas.pt(px, py) for px, py in poly], np.int32)
        cv2.fillConvexPoly(self.img, points, (70, 92, 104))

    def shadow(self, vehicle: Placed) -> None:
        x0, y0, x1, y1 = self._box(vehicle)
        self._fill((x0 + 4, y0 + 5, x1 + 4, y1 + 5), (38, 40, 42))

    def body(self, vehicle: Placed) -> None:
        if vehicle.body.kind in _TWO_WHEELERS:
            self._two_wheeler(vehicle)
            return
        colour = vehicle.body.colour_bgr
        self._fill(self._box(vehicle), colour)
        self._fill(self._part(vehicle, 0.0, 1.0, 0.0), _shade(colour, 0.8))
        self._fill(self._part(vehicle, 0.02, 0.98, 0.06), colour)
        if vehicle.body.kind is VehicleKind.BUS:
            self._fill(self._part(vehicle, 0.02, 0.07, 0.1), _GLASS)
            self._fill(self._part(vehicle, 0.08, 0.97, 0.16), _shade(colour, 0.9, 18))
            self._fill(self._part(vehicle, 0.3, 0.42, 0.3), (190, 190, 190))
            self._fill(self._part(vehicle, 0.62, 0.74, 0.3), (190, 190, 190))
        else:
            roof_end = 0.85 if vehicle.body.kind is VehicleKind.VAN else 0.72
            self._fill(self._part(vehicle, 0.22, 0.36, 0.1), _GLASS)
            self._fill(self._part(vehicle, 0.36, roof_end, 0.12), _shade(colour, 0.86, 14))
            self._fill(self._part(vehicle, roof_end, roof_end + 0.1, 0.12), _GLASS)
        self._lights(vehicle)

    def _two_wheeler(self, vehicle: Placed) -> None:
        """A motorbike or bicycle seen from above: wheels and frame along its length, the
        rider's shoulders across it and a helmet or head in the middle."""
        colour = vehicle.body.colour_bgr
        frame_inset = 0.3 if vehicle.body.kind is VehicleKind.MOTORBIKE else 0.4
        self._fill(self._part(vehicle, 0.0, 1.0, frame_inset), (30, 30, 32))
        if vehicle.body.kind is VehicleKind.MOTORBIKE:
            self._fill(self._part(vehicle, 0.15, 0.75, 0.22), colour)
        self._fill(self._part(vehicle, 0.38, 0.68, 0.0), _RIDER)
        self._fill(self._part(vehicle, 0.42, 0.58, 0.3), _shade(colour, 0.6, 20))
        if vehicle.body.kind is VehicleKind.MOTORBIKE:
            lamp: Colour = (235, 250, 255) if self.headlights else (200, 205, 210)
            self._fill(self._part(vehicle, 0.0, 0.06, 0.35), lamp, lit=self.headlights)

    def _lights(self, vehicle: Placed) -> None:
        on = self.headlights
        head: Colour = (235, 250, 255) if on else (200, 205, 210)
        tail: Colour = (40, 40, 250) if on else (30, 30, 140)
        for inset_from, inset_to in ((0.08, 0.3), (0.7, 0.92)):
            for rect, colour in (
                (self._part(vehicle, 0.0, 0.04, 0.0), head),
                (self._part(vehicle, 0.96, 1.0, 0.0), tail),
            ):
                self._fill(_across(rect, vehicle, inset_from, inset_to), colour, lit=on)


def _across(rect: RectXYXY, vehicle: Placed, start: float, end: float) -> RectXYXY:
    """The part of ``rect`` between two fractions of the vehicle's width."""
    x0, y0, x1, y1 = rect
    if vehicle.heading[0] == 0:
        return (x0 + (x1 - x0) * start, y0, x0 + (x1 - x0) * end, y1)
    return (x0, y0 + (y1 - y0) * start, x1, y0 + (y1 - y0) * end)


# -- backgrounds (drawn once; clarity matters more than speed here) ------------------------------


def _draw_buildings(img: BGRImage, c: _Canvas, region: RectXYXY, seed: int) -> None:
    """Roofs and trees filling ``region`` (native px)."""
    rng = random.Random(seed)
    x0, y0, x1, y1 = region
    x = x0
    while x < x1:
        w = rng.uniform(120, 260)
        roof = rng.choice(((118, 126, 150), (96, 104, 118), (150, 150, 142), (90, 110, 160)))
        c.rect(img, (x + 6, y0 + 6, min(x + w, x1) - 6, y1 - 6), roof)
        c.rect(img, (x + 6, y0 + 6, min(x + w, x1) - 6, y1 - 6), _shade(roof, 0.7), 2)
        x += w
    for _ in range(int((x1 - x0) * (y1 - y0) / 30000) + 1):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        radius = max(round(rng.uniform(14, 26) * c.sx), 2)
        cv2.circle(img, c.pt(cx, cy), radius, (52, 104, 60), -1, cv2.LINE_AA)
        cv2.circle(img, c.pt(cx, cy), radius, (38, 80, 44), 2, cv2.LINE_AA)


def _dashes(
    img: BGRImage,
    c: _Canvas,
    *,
    vertical: bool,
    at: float,
    span: tuple[float, float],
    colour: Colour,
) -> None:
    """A dashed lane line at ``at`` (across) along ``span``."""
    start, end = sorted(span)
    pos = start
    while pos < end:
        stop = min(pos + 36, end)
        rect = (at - 2, pos, at + 2, stop) if vertical else (pos, at - 2, stop, at + 2)
        c.rect(img, rect, colour)
        pos += 72


def _band(vertical: bool, across: tuple[float, float], along: tuple[float, float]) -> RectXYXY:
    a0, a1 = sorted(across)
    b0, b1 = sorted(along)
    return (a0, b0, a1, b1) if vertical else (b0, a0, b1, a1)


def _draw_intersection(img: BGRImage, c: _Canvas, layout: IntersectionLayout) -> None:
    width, height = NATIVE_WH
    first = layout.approach[0]
    vertical = first.vertical
    sign = first.direction_xy[1] if vertical else first.direction_xy[0]
    extent = height if vertical else width
    cross_extent = width if vertical else height
    (ax, ay), (bx, by) = layout.line_xy
    line_along = ay if vertical else ax
    centres = [(lane.origin_xy[0] if vertical else lane.origin_xy[1]) for lane in layout.lanes]
    half = first.width / 2
    road = (min(centres) - half - 8, max(centres) + half + 8)
    crosswalk = (line_along + sign * 10, line_along + sign * 60)
    cross_street = (line_along + sign * 60, line_along + sign * 260)
    _draw_buildings(img, c, (0, 0, width, height), seed=len(centres))
    c.rect(img, _band(vertical, (road[0] - 40, road[1] + 40), (0, extent)), _PAVEMENT)
    c.rect(
        img,
        _band(not vertical, (cross_street[0] - 40, cross_street[1] + 40), (0, cross_extent)),
        _PAVEMENT,
    )
    c.rect(img, _band(vertical, road, (0, extent)), _ASPHALT)
    c.rect(img, _band(not vertical, cross_street, (0, cross_extent)), _ASPHALT)
    c.rect(img, _band(vertical, (road[0] - 4, road[0]), (0, extent)), (205, 205, 205))
    c.rect(img, _band(vertical, (road[1], road[1] + 4), (0, extent)), (205, 205, 205))
    for stripe in np.arange(road[0] + 6, road[1] - 6, 28):
        c.rect(img, _band(vertical, (stripe, stripe + 16), crosswalk), _PAINT)
    approach_span = (line_along, 0 if sign > 0 else extent)
    across0, across1 = sorted((ax, bx) if vertical else (ay, by))
    for k in range(1, len(layout.approach)):
        at = across0 + k * first.width
        _dashes(img, c, vertical=vertical, at=at, span=approach_span, colour=_PAINT)
        c.rect(img, _band(vertical, (at - 2, at + 2), (line_along, line_along - sign * 90)), _PAINT)
    if layout.opposite:
        divider = across0 if abs(across0 - centres[-1]) < abs(across1 - centres[-1]) else across1
        for side in (-5, 3):
            c.rect(
                img, _band(vertical, (divider + side, divider + side + 2), approach_span), _YELLOW
            )
    c.rect(img, _band(vertical, (across0, across1), (line_along, line_along - sign * 10)), _PAINT)


def _draw_street(img: BGRImage, c: _Canvas, layout: StreetLayout) -> None:
    width, height = NATIVE_WH
    y0, y1 = layout.kerb_y
    lanes_y = [layout.near.origin_xy[1], layout.far.origin_xy[1]]
    half = layout.near.width / 2
    top, bottom = min(*lanes_y, y0) - (half if min(lanes_y) < y0 else 0), max(*lanes_y, y1)
    top = min(top, y0)
    bottom = max(bottom + (half if max(lanes_y) > y1 else 0), y1)
    _draw_buildings(img, c, (0, 0, width, top - 70), seed=1)
    _draw_buildings(img, c, (0, bottom + 70, width, height), seed=2)
    c.rect(img, (0, top - 70, width, bottom + 70), _PAVEMENT)
    c.rect(img, (0, top, width, bottom), _ASPHALT)
    c.rect(img, (0, y0, width, y1), _PARKING_ASPHALT)
    for edge in (top, bottom):
        c.rect(img, (0, edge - 3, width, edge + 3), (205, 205, 205))
    kerb_line = (
        y0 if abs(y0 - layout.near.origin_xy[1]) < abs(y1 - layout.near.origin_xy[1]) else y1
    )
    c.rect(img, (0, kerb_line - 2, width, kerb_line + 2), _PAINT)
    middle = (lanes_y[0] + lanes_y[1]) / 2
    for side in (-5, 3):
        c.rect(img, (0, middle + side, width, middle + side + 2), _YELLOW)
    for slot in layout.slots:
        if slot.zone is None:
            c.rect(img, (slot.x0, y0 + 2, slot.x1, y1 - 2), _PAINT, max(round(2 * c.sx), 1))
            cv2.putText(
                img,
                "P",
                c.pt((slot.x0 + slot.x1) / 2 - 10, (y0 + y1) / 2 + 10),
                cv2.FONT_HERSHEY_SIMPLEX,
                1.0 * c.sx,
                _PAINT,
                max(round(2 * c.sx), 1),
            )
            continue
        _hatch(img, c, (slot.x0, y0 + 2, slot.x1, y1 - 2))
        awning_y = (y1 + 10, y1 + 50) if kerb_line == y0 else (y0 - 50, y0 - 10)
        c.rect(img, (slot.x0 + 20, awning_y[0], slot.x1 - 20, awning_y[1]), (70, 70, 150))


def _hatch(img: BGRImage, c: _Canvas, rect: RectXYXY) -> None:
    """Yellow box with diagonal hatching: the road marking for no stopping."""
    x0, y0 = c.pt(rect[0], rect[1])
    x1, y1 = c.pt(rect[2], rect[3])
    region = img[y0:y1, x0:x1]
    step = max(round(22 * c.sx), 4)
    for k in range(-(y1 - y0), x1 - x0, step):
        cv2.line(region, (k, y1 - y0), (k + (y1 - y0), 0), _YELLOW, max(round(2 * c.sx), 1))
    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), _YELLOW, max(round(3 * c.sx), 1))


def _add_street_lamps(img: BGRImage, c: _Canvas, layout: Layout) -> BGRImage:
    """Pools of warm light along the road, for the night look."""
    height, width = img.shape[:2]
    glow = np.zeros((height, width), np.float32)
    ys = [lane.origin_xy[1] for lane in layout.lanes]
    xs = [lane.origin_xy[0] for lane in layout.lanes]
    vertical = isinstance(layout, IntersectionLayout) and layout.approach[0].vertical
    for k in range(5):
        along = (k + 0.5) * (NATIVE_WH[1] if vertical else NATIVE_WH[0]) / 5
        x, y = (
            ((min(xs) - 60, along) if k % 2 else (max(xs) + 60, along))
            if vertical
            else ((along, min(ys) - 60) if k % 2 else (along, max(ys) + 60))
        )
        cv2.circle(glow, c.pt(x, y), max(round(170 * c.sx), 4), 1.0, -1)
    glow = np.asarray(cv2.GaussianBlur(glow, (0, 0), sigmaX=max(60 * c.sx, 2)), np.float32)
    warm = np.array([40, 70, 95], np.float32)
    return np.clip(img + glow[:, :, None] * warm, 0, 255).astype(np.uint8)
