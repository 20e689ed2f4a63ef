"""The fast foreground (reused buffers, one OpenCV pass per step) against its specification:
the plain numpy formulation it replaced (comparing in 64ths of a grey level), which
must give the same masks and the same learnt background, bit for bit, frame after frame."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from services.detector.background import (
    GLOW_EDGE_FACTOR,
    SUBLEVELS,
    SelectiveBackground,
    _median,
    foreign_levels,
)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
K3 = np.ones((3, 3), np.uint8)
K7 = np.ones((7, 7), np.uint8)


class ReferenceBackground:
    """SelectiveBackground.apply in plain numpy (np.median, boolean indexing), comparing
    frame and model in whole 64ths of a grey level (SUBLEVELS)."""

    def __init__(self, *, fps: float) -> None:
        self.alpha_learn = min(1.0, 1.0 / (fps * 3.0))
        self.alpha_absorb = min(1.0, 1.0 / (fps * 12.0))
        self.warmup_frames = max(1, round(fps * 1.0))
        self.background: F32 | None = None
        self.frames_seen = 0
        self.threshold = 3.0
        self.gain = 1.0

    def apply(self, grey: U8, frozen: U8 | None) -> U8:
        self.frames_seen += 1
        if self.background is None:
            self.background = grey.astype(np.float32)
            return np.zeros_like(grey)
        background = self.background
        if self.frames_seen <= self.warmup_frames:
            cv2.accumulateWeighted(grey, background, 0.3)
            return np.zeros_like(grey)
        mask, lit = self.foreground(grey, background)
        near = cv2.bitwise_or(cv2.dilate(mask, K7), lit)
        learnable = cv2.bitwise_not(near if frozen is None else cv2.bitwise_or(near, frozen))
        if self.gain > 1.0:
            learnable[grey >= 254] = 0
        normalised = grey.astype(np.float32) * (1.0 / self.gain)
        cv2.accumulateWeighted(normalised, background, self.alpha_learn, learnable)
        absorb = near if frozen is None else cv2.bitwise_and(near, cv2.bitwise_not(frozen))
        cv2.accumulateWeighted(normalised, background, self.alpha_absorb, absorb)
        return mask

    def foreground(self, grey: U8, background: F32) -> tuple[U8, U8]:
        frame = grey.astype(np.float32)
        sample_frame, sample_background = frame[::4, ::4], background[::4, ::4]
        gain = float(np.median((sample_frame + 1.0) / (sample_background + 1.0)))
        self.gain = gain
        top = np.float32(255 * SUBLEVELS)
        product = np.minimum(background * np.float32(gain * SUBLEVELS), top)
        expected = np.floor(product + np.float32(0.5)).astype(np.int16)
        residual = sample_frame - sample_background * gain
        noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        self.threshold = max(3.0, 3.0 * noise)
        threshold = self.threshold * SUBLEVELS
        levels = grey.astype(np.int16) * SUBLEVELS
        brighter = levels - cv2.dilate(expected, K3)
        darker = cv2.erode(expected, K3) - levels
        excess = np.maximum(brighter, darker)
        frame_edges = cv2.morphologyEx(levels, cv2.MORPH_GRADIENT, K3)
        background_edges = cv2.morphologyEx(expected, cv2.MORPH_GRADIENT, K3)
        glow = (brighter > darker) & (
            frame_edges <= background_edges + GLOW_EDGE_FACTOR * threshold
        )
        lit = ((cv2.blur(excess, (3, 3)) > threshold) & glow).astype(np.uint8) * 255
        excess[glow] = 0
        raw = (cv2.blur(excess, (3, 3)) > threshold).astype(np.uint8) * 255
        closed = cv2.morphologyEx(raw, cv2.MORPH_CLOSE, K3)
        return np.asarray(cv2.morphologyEx(closed, cv2.MORPH_OPEN, K3)), lit


def street(frame: int, *, gain: float, rng: np.random.Generator) -> U8:
    """A textured road with paint, a dark car, a light car, a headlight beam, sensor noise."""
    height, width = 180, 320
    y, x = np.mgrid[0:height, 0:width]
    road = 90 + 20 * np.sin(x / 7.0) * np.cos(y / 11.0)
    road[80:84, :] = 230  # a stop line, near white
    road[:, 150:153] = 200
    image = road.astype(np.float32)
    cx = 10 + 6 * frame
    image[100:130, cx % width : cx % width + 40] = 35  # a dark car driving right
    image[20:50, 200:240] = 170 + (frame % 3)  # a light car, standing
    image[140:175, 40:120] += 60 * (frame % 10 > 4)  # a beam sweeping on and off
    image = image * gain + rng.normal(0.0, 2.0, image.shape)
    return np.asarray(np.clip(np.rint(image), 0, 255), dtype=np.uint8)


@pytest.mark.parametrize(
    ("gain_per_frame", "with_frozen"),
    [(0.0, False), (0.004, True), (-0.004, False), (0.02, True)],
)
def test_masks_and_model_match_the_numpy_formulation(
    gain_per_frame: float, with_frozen: bool
) -> None:
    fast, reference = SelectiveBackground(fps=10.0), ReferenceBackground(fps=10.0)
    rng = np.random.default_rng(7)
    frozen = np.zeros((180, 320), np.uint8)
    frozen[15:55, 195:245] = 255
    for index in range(60):
        grey = street(index, gain=1.0 + gain_per_frame * max(0, index - 15), rng=rng)
        expected = reference.apply(grey, frozen if with_frozen else None)
        actual = fast.apply(grey, frozen=frozen if with_frozen else None)
        assert np.array_equal(actual, expected), f"frame {index}"
        assert fast.threshold == reference.threshold
        assert np.array_equal(fast._background, reference.background), f"frame {index}"
    assert np.count_nonzero(actual) > 0  # the comparison saw foreground, not only road


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 8160, 8161])
@pytest.mark.parametrize("kind", ["uniform", "ties", "negative", "zeros"])
def test_median_is_numpys(size: int, kind: str) -> None:
    rng = np.random.default_rng(size)
    values = {
        "uniform": rng.random(size),
        "ties": np.round(rng.random(size) * 4),
        "negative": -rng.random(size) * 1e-3,
        "zeros": np.zeros(size),
    }[kind].astype(np.float32)
    median = _median(values.copy())
    assert isinstance(median, np.float32)
    assert median == np.median(values)


def shaken_street(frame: int, *, car: bool) -> U8:
    """Thin painted lines seen by a camera that shakes by one source pixel: the source is
    twice the working size, so a 2-px line is one sharp working pixel or two half-bright
    ones, as the shake takes it."""
    road = np.full((180, 640), 80.0, np.float32)
    road[:, 300:302] = 220  # a lane line
    road[:, 340:342] = 200  # and a second one
    shift = (-1, 0, 1, 1, 0, -1, 0, 1)[frame % 8]
    source = np.roll(road, shift, axis=1)
    if car:
        source[60:120, 290:320] = 40  # a dark car standing on the first line
    working = cv2.resize(source, (320, 180), interpolation=cv2.INTER_AREA)
    return np.asarray(np.clip(np.rint(working), 0, 255), dtype=np.uint8)


def test_a_shaken_painted_line_is_no_foreground_but_a_car_on_it_is() -> None:
    background = SelectiveBackground(fps=10.0)
    for index in range(40):
        mask = background.apply(shaken_street(index, car=False))
        assert np.count_nonzero(mask) == 0, f"frame {index}"
    mask = background.apply(shaken_street(40, car=True))
    assert np.count_nonzero(mask[62:118, 147:158]) > 0.9 * 56 * 11


def test_where_the_mask_is_kept_whole_a_shaken_line_still_shows() -> None:
    # The no-parking zones: vehicles stand on hatching there, so nothing is cut out.
    background = SelectiveBackground(fps=10.0)
    whole = np.full((180, 320), 255, np.uint8)
    masks = [background.apply(shaken_street(index, car=False), whole=whole) for index in range(40)]
    assert any(np.count_nonzero(mask) for mask in masks)


@pytest.mark.parametrize(
    ("values", "road", "foreign"),
    [
        ([10, 50, 122, 130], [48, 50, 120], [True, False, False, True]),  # dark car, paint, glare
        ([45, 123], [48, 50, 120], [False, False]),  # within the margin of 3
        ([80], [80], [False]),
    ],
)
def test_foreign_levels_lie_outside_the_road_range(
    values: list[int], road: list[int], foreign: list[bool]
) -> None:
    result = foreign_levels(np.array(values, np.uint8), road=np.array(road, np.uint8), margin=3.0)
    assert result.tolist() == foreign


def night_street(*, car: bool) -> U8:
    """A dim street at night with a zebra crossing (bright stripes across x 100-220, y 60-80)
    and, if ``car``, a dark car standing on it (x 150-166, y 55-95)."""
    street = np.full((180, 320), 60, np.uint8)
    for x in range(100, 220, 8):
        street[60:80, x : x + 4] = 120
    if car:
        street[55:95, 150:166] = 25
    return street


def blob_box(mask: U8) -> tuple[int, int, int, int]:
    x, y, w, h = cv2.boundingRect(mask)
    return (x, y, w, h)


def test_ghost_of_a_dark_car_over_paint_at_night_is_told_from_a_car() -> None:
    """A car stood on the zebra while the model started, so the background holds it; when it
    has gone, the frame shows stripes sharper than the car's faint edges (the edge vote calls
    it a vehicle), but at the road's own levels: a ghost. The same car arriving is none."""
    background = SelectiveBackground(fps=10.0)
    for _ in range(12):
        background.apply(night_street(car=True))
    empty = night_street(car=False)
    mask = background.apply(empty)
    assert np.count_nonzero(mask) > 0
    assert background.is_ghost(empty, mask, blob_box(mask))

    fresh = SelectiveBackground(fps=10.0)
    for _ in range(12):
        fresh.apply(night_street(car=False))
    arrived = night_street(car=True)
    mask = fresh.apply(arrived)
    assert not fresh.is_ghost(arrived, mask, blob_box(mask))
