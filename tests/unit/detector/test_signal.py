"""Lamp-head reading (one picture, no warm-up) and the smoothed, back-dated signal timeline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.common.config.scene import LampLayout
from services.detector.signal import (
    Cue,
    LightState,
    SignalTimeline,
    colour_votes,
    crop_head,
    lamp_levels,
    read_by_position,
    read_lamp_head,
)

RED, AMBER, GREEN = LightState.RED, LightState.AMBER, LightState.GREEN
PHASES = (RED, AMBER, GREEN)
# LED colours as cameras record them (BGR): red leans orange, signal green leans blue.
LIT_BGR = {RED: (50, 60, 255), AMBER: (0, 165, 255), GREEN: (170, 255, 70)}
ORANGE_RED_BGR = (40, 85, 255)
YELLOW_AMBER_BGR = (20, 200, 250)


def synthetic_head(
    lit: LightState | None,
    *,
    layout: LampLayout = LampLayout.VERTICAL,
    size_wh: tuple[int, int] = (30, 90),
    bloom: bool = False,
    phantom: float = 0.0,
    gain: float = 1.0,
    margin_px: int = 0,
    margin_bgr: tuple[int, int, int] = (120, 125, 130),
    lit_bgr: tuple[int, int, int] | None = None,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """A BGR picture of a 3-lamp head (``size_wh`` as if vertical) with ``lit`` on.

    ``bloom`` washes the lit core out towards white and spreads a halo of its colour over the
    head; ``phantom`` tints each unlit lamp with that share of its own colour (a dull lens in
    daylight); ``gain`` scales the whole picture (exposure).
    """
    width, height = size_wh
    head = np.full((height + 2 * margin_px, width + 2 * margin_px, 3), margin_bgr, np.float32)
    head[margin_px : margin_px + height, margin_px : margin_px + width] = (14, 14, 14)
    radius = max(min(width, height / 3) * 0.42, 1.0)
    glow = np.zeros_like(head)
    for i, state in enumerate(PHASES):
        centre = (margin_px + width / 2, margin_px + height * (2 * i + 1) / 6)
        centre_px = (round(centre[0] * 8), round(centre[1] * 8))
        colour = np.array(lit_bgr if (lit_bgr and state is lit) else LIT_BGR[state], np.float32)
        if state is lit:
            core = colour * 0.55 + 110 if bloom else colour
            cv2.circle(head, centre_px, round(radius * 8), core.tolist(), -1, cv2.LINE_AA, 3)
            if bloom:
                spot = np.zeros(head.shape[:2], np.float32)
                cv2.circle(spot, centre_px, round(radius * 8), 1.0, -1, cv2.LINE_AA, 3)
                spot = cv2.GaussianBlur(spot, (0, 0), sigmaX=radius * 1.2)
                glow += spot[:, :, None] / max(float(spot.max()), 1e-6) * colour * 1.3
        else:
            unlit = colour * phantom + 18
            cv2.circle(head, centre_px, round(radius * 8), unlit.tolist(), -1, cv2.LINE_AA, 3)
    picture = (head + glow) * gain
    picture += np.random.default_rng(seed).normal(0, noise, picture.shape)
    out = picture.clip(0, 255).astype(np.uint8)
    return out if layout is LampLayout.VERTICAL else np.ascontiguousarray(out.swapaxes(0, 1))


LOOKS = {
    "plain": {},
    "led-9x23-bloom": {"size_wh": (9, 23), "bloom": True},
    "led-9x23-bloom-phantom": {"size_wh": (9, 23), "bloom": True, "phantom": 0.3},
    "led-bloom-in-margins": {"bloom": True, "phantom": 0.25, "margin_px": 8},
    "dusk-noisy": {"gain": 0.5, "noise": 4.0},
    "exposure-up": {"size_wh": (9, 23), "bloom": True, "gain": 1.4},
    "exposure-down": {"size_wh": (9, 23), "bloom": True, "gain": 0.55},
    "tree-behind": {"size_wh": (12, 30), "margin_px": 6, "margin_bgr": (60, 140, 70)},
}


@pytest.mark.parametrize("layout", list(LampLayout))
@pytest.mark.parametrize("look", list(LOOKS))
@pytest.mark.parametrize("lit", PHASES)
def test_one_picture_reads_the_lit_lamp(layout: LampLayout, look: str, lit: LightState) -> None:
    head = synthetic_head(lit, layout=layout, **LOOKS[look])  # type: ignore[arg-type]
    reading = read_lamp_head(head, layout=layout)
    assert reading.state is lit, reading


@pytest.mark.parametrize("layout", list(LampLayout))
@pytest.mark.parametrize("lit", PHASES)
def test_greyscale_head_reads_by_position(layout: LampLayout, lit: LightState) -> None:
    head = synthetic_head(lit, layout=layout, phantom=0.2)
    grey = cv2.cvtColor(head, cv2.COLOR_BGR2GRAY)
    reading = read_lamp_head(grey, layout=layout)
    assert (reading.state, reading.cue) == (lit, Cue.POSITION)


@pytest.mark.parametrize(
    ("lit", "lit_bgr"),
    [(RED, ORANGE_RED_BGR), (AMBER, YELLOW_AMBER_BGR), (AMBER, LIT_BGR[AMBER])],
)
@pytest.mark.parametrize("bloom", [False, True])
def test_amber_and_red_are_told_apart(
    lit: LightState, lit_bgr: tuple[int, int, int], bloom: bool
) -> None:
    head = synthetic_head(lit, size_wh=(9, 23), bloom=bloom, lit_bgr=lit_bgr)
    assert read_lamp_head(head, layout=LampLayout.VERTICAL).state is lit


def test_red_bloom_over_the_amber_lamp_still_reads_red() -> None:
    # A red lamp so bright that its halo covers the amber lamp's third.
    head = synthetic_head(RED, size_wh=(9, 23), bloom=True, gain=1.6)
    assert read_lamp_head(head, layout=LampLayout.VERTICAL).state is RED


@pytest.mark.parametrize("layout", list(LampLayout))
def test_red_lamp_blown_out_to_yellow_reads_red(layout: LampLayout) -> None:
    """A red LED whose core a camera records yellow, with only a thin red rim (seen on a
    Vietnamese head in afternoon sun): its hue is amber's, but the lit lamp is the red one."""
    head = synthetic_head(RED, layout=layout, size_wh=(16, 40), lit_bgr=(40, 215, 240))
    assert read_lamp_head(head, layout=layout).state is RED


@pytest.mark.parametrize("layout", list(LampLayout))
def test_red_lamp_blooming_orange_reads_red_by_position(layout: LampLayout) -> None:
    """A red LED whose core a camera records orange, inside a thin red rim (seen on a
    Vietnamese head through a phone's screen recording): its pixels vote red and amber
    nearly alike, so the colour cannot decide, and the lamp lit by position is the red one."""
    head = synthetic_head(RED, size_wh=(16, 40), lit_bgr=(40, 150, 250))
    cv2.circle(head, (8, 7), 7, (30, 30, 220), 1)
    red, amber, green = colour_votes(head)
    assert green == 0 and 0.4 < amber / (red + amber) < 0.6
    if layout is LampLayout.HORIZONTAL:
        head = np.ascontiguousarray(head.swapaxes(0, 1))
    reading = read_lamp_head(head, layout=layout)
    assert (reading.state, reading.cue) == (RED, Cue.COLOUR)


def test_dark_or_blank_head_is_unknown() -> None:
    dark = synthetic_head(None, phantom=0.0)
    assert read_lamp_head(dark, layout=LampLayout.VERTICAL).state is LightState.UNKNOWN
    blank = np.full((23, 9, 3), 128, np.uint8)
    assert read_lamp_head(blank, layout=LampLayout.VERTICAL).state is LightState.UNKNOWN
    assert read_lamp_head(blank[:0], layout=LampLayout.VERTICAL).state is LightState.UNKNOWN


def test_lit_lamp_blown_out_to_white_reads_by_position() -> None:
    # A dusk LED seen as a white disc with no tinted halo (and an infrared camera's frames).
    head = synthetic_head(GREEN, lit_bgr=(250, 250, 250))
    reading = read_lamp_head(head, layout=LampLayout.VERTICAL)
    assert (reading.state, reading.cue) == (GREEN, Cue.POSITION)


@pytest.mark.parametrize("layout", list(LampLayout))
@pytest.mark.parametrize("first", PHASES)
def test_state_is_known_from_the_first_frame_in_any_phase(
    layout: LampLayout, first: LightState
) -> None:
    """No warm-up: a clip that starts mid-phase is dated from frame 0, and a lamp lit for the
    whole clip (never seen dark) reads the same throughout."""
    timeline = SignalTimeline(confirm_frames=3)
    for frame in range(60):
        head = synthetic_head(first, layout=layout, size_wh=(9, 23), bloom=True, seed=frame)
        timeline.update(frame=frame, reading=read_lamp_head(head, layout=layout).state)
    assert timeline.state_at(0) is first
    assert timeline.state_at(59) is first


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ((100.0, 100.0, 20.0), LightState.UNKNOWN),  # two lamps equally lit
        ((20.0, 100.0, 100.0), LightState.UNKNOWN),
        ((100.0, 20.0, 20.0), RED),
        ((20.0, 20.0, 100.0), GREEN),
        ((100.0, 80.0, 80.0), RED),  # grey unlit lamps almost as bright as a lit red
        ((45.0, 18.0, 18.0), RED),  # dusk: everything at half brightness
        ((40.0, 30.0, 35.0), LightState.UNKNOWN),  # no lamp clearly lit
    ],
)
def test_read_by_position(levels: tuple[float, float, float], expected: LightState) -> None:
    assert read_by_position(levels) is expected


@pytest.mark.parametrize(
    ("shape", "roi_xywh", "factor", "expected_shape"),
    [
        ((1080, 1920, 3), (1683, 75, 9, 22), 1.0, (22, 9, 3)),
        ((270, 480, 3), (1683, 75, 9, 22), 0.25, (7, 3, 3)),  # rounded outwards
        ((270, 480, 3), (1916, 1076, 4, 4), 0.25, (1, 1, 3)),  # clipped, never empty
    ],
)
def test_crop_head(
    shape: tuple[int, int, int],
    roi_xywh: tuple[int, int, int, int],
    factor: float,
    expected_shape: tuple[int, int, int],
) -> None:
    picture = np.zeros(shape, np.uint8)
    assert crop_head(picture, roi_xywh=roi_xywh, factor=factor).shape == expected_shape


def test_timeline_confirms_and_backdates_changes() -> None:
    timeline = SignalTimeline(confirm_frames=3)
    readings = [GREEN] * 5 + [RED, LightState.UNKNOWN, RED]
    readings += [RED] * 4
    changes = [timeline.update(frame=i, reading=r) for i, r in enumerate(readings)]
    confirmed = [c for c in changes if c is not None]
    assert [(c.frame, c.state) for c in confirmed] == [(0, GREEN), (7, RED)]
    # A one-frame glitch does not change the state; a real change is dated to its first frame.
    assert timeline.state_at(5) == GREEN
    assert timeline.state_at(7) == RED
    # The light still reads as confirmed: every frame read so far is final.
    assert timeline.decided_through == len(readings) - 1


def reference_lamp_levels(roi_grey: np.ndarray) -> tuple[float, ...]:
    """The plain formulation: sort each third, mean of its brightest quarter."""
    height = roi_grey.shape[0]
    levels = []
    for i in range(3):
        third = roi_grey[height * i // 3 : max(height * (i + 1) // 3, height * i // 3 + 1)]
        flat = np.sort(third, axis=None)
        levels.append(float(flat[-max(len(flat) // 4, 1) :].mean()))
    return tuple(levels)


@pytest.mark.parametrize("seed", range(30))
def test_lamp_levels_match_sorting_formulation_exactly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 70)), int(rng.integers(1, 30))
    # Few distinct values half the time, so the quarter's edge falls among equal values.
    high = 256 if seed % 2 else 4
    roi = rng.integers(0, high, (height, width), dtype=np.uint8)
    assert lamp_levels(roi) == reference_lamp_levels(roi)
