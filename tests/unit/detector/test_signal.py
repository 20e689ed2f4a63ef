"""Lamp-head reading and the smoothed, back-dated signal timeline."""

from __future__ import annotations

import numpy as np
import pytest

from services.detector.signal import LampClassifier, LightState, SignalTimeline, lamp_levels


def head(lit: int | None, *, lit_level: int, unlit_level: int, noise: float = 0.0) -> np.ndarray:
    """A 30x10 greyscale head: three 10x10 lamps, ``lit`` (0 top .. 2 bottom) bright."""
    rng = np.random.default_rng(lit or 0)
    roi = np.full((30, 10), 15.0)
    for i in range(3):
        roi[i * 10 + 2 : i * 10 + 8, 2:8] = lit_level if i == lit else unlit_level
    return (roi + rng.normal(0, noise, roi.shape)).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("lit", "lit_level", "unlit_level", "noise", "expected"),
    [
        (0, 90, 30, 0, LightState.RED),  # pure red is dim in grey, still far above unlit
        (1, 180, 30, 0, LightState.AMBER),
        (2, 150, 30, 0, LightState.GREEN),
        (0, 45, 18, 4, LightState.RED),  # dusk: everything at half brightness, noisy
        (0, 100, 80, 0, LightState.RED),  # grey unlit lamps almost as bright as a lit red
        (None, 0, 40, 0, LightState.UNKNOWN),  # dark head
    ],
)
def test_classify_lamp_head(
    lit: int | None, lit_level: int, unlit_level: int, noise: float, expected: LightState
) -> None:
    roi = head(lit, lit_level=lit_level, unlit_level=unlit_level, noise=noise)
    assert LampClassifier().classify(lamp_levels(roi)) == expected


def test_unlit_level_is_learnt_per_lamp() -> None:
    # This head's unlit amber is brighter than its unlit red and green; once each lamp has
    # been seen dark, a lit red still reads as red.
    classifier = LampClassifier()
    levels = {LightState.GREEN: (40.0, 70.0, 160.0), LightState.RED: (120.0, 70.0, 40.0)}
    assert classifier.classify(levels[LightState.GREEN]) == LightState.GREEN
    assert classifier.classify(levels[LightState.RED]) == LightState.RED


def test_timeline_confirms_and_backdates_changes() -> None:
    timeline = SignalTimeline(confirm_frames=3)
    readings = [LightState.GREEN] * 5 + [LightState.RED, LightState.UNKNOWN, LightState.RED]
    readings += [LightState.RED] * 4
    changes = [timeline.update(frame=i, reading=r) for i, r in enumerate(readings)]
    confirmed = [c for c in changes if c is not None]
    assert [(c.frame, c.state) for c in confirmed] == [(0, LightState.GREEN), (7, LightState.RED)]
    # A one-frame glitch does not change the state; a real change is dated to its first frame.
    assert timeline.state_at(5) == LightState.GREEN
    assert timeline.state_at(7) == LightState.RED
    assert timeline.decided_through == len(readings) - 3


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


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ((100.0, 100.0, 20.0), LightState.UNKNOWN),  # two lamps equally lit
        ((20.0, 100.0, 100.0), LightState.UNKNOWN),
        ((100.0, 20.0, 20.0), LightState.RED),
        ((20.0, 20.0, 100.0), LightState.GREEN),
    ],
)
def test_classify_first_reading(levels: tuple[float, float, float], expected: LightState) -> None:
    assert LampClassifier().classify(levels) == expected
