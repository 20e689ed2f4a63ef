"""Traffic-light state from the lamp head's region of interest, with no warm-up.

A reading looks at one picture of the head and nothing before it, so the state is known from
the first frame whatever the phase, and a lamp that is lit for the whole clip reads the same
as one that has been seen dark. (An earlier reader learnt each lamp's unlit level while that
lamp was dark; on a junction that is red from the first frame to the last it never read red.)

Two cues say which lamp is lit:

* **colour**, where the picture has it: each lit-looking pixel (bright relative to the head's
  brightest, and saturated) votes for red, amber or green by its hue, and counts three times in
  its own lamp's third of the head. Overexposed LED cores are nearly white, so the votes come
  from their halo; a red halo spilling over the amber lamp still votes red.
* **position**, always: which third of the head (top to bottom, or left to right for a
  horizontal head) is brighter than the darkest third by a clear margin. This is the whole
  reading for a greyscale picture, and the fallback for a colour one whose lit lamp shows
  no hue at all: at dusk an LED can blow out to a white disc with only a faint halo. (A
  white glint on a dark head then reads as a lamp too; on the development clips that only
  happened while the head was dark, where the held state does not change on it.)

The cues are checked against each other in two cases, both red LEDs that a camera records
towards yellow:

* colour saying amber while position clearly says the red lamp is lit is a red core recorded
  yellow, with only a thin red rim (a Vietnamese head in afternoon sun read amber through
  its whole red phase), and reads red;
* colour torn between two lamps (neither holds ``min_vote_share`` of the votes) reads as the
  lamp lit by position, if it is one of the two (a red lamp blooming orange, halfway to
  amber, read unknown through its whole red phase).

Readings are per frame; :class:`SignalTimeline` smooths them and dates changes.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
import numpy.typing as npt

from services.common.arrays import GreyImage
from services.common.config.scene import LampLayout

# A lamp-head crop: H x W greyscale or H x W x 3 BGR.
HeadImage = npt.NDArray[np.uint8]


class LightState(StrEnum):
    RED = "red"
    AMBER = "amber"
    GREEN = "green"
    UNKNOWN = "unknown"


_LAMPS = (LightState.RED, LightState.AMBER, LightState.GREEN)


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    """How sure a reading must be; hues are OpenCV's (degrees / 2, 0..179)."""

    # Position: the lit third must outshine the darkest third by this many grey levels, and
    # by twice as much as the runner-up does.
    min_contrast: float = 12.0
    # Colour: a pixel votes when it is brighter than this share of the head's brightest
    # pixel (and than ``min_lit_level``), and at least this saturated. An LED's core blown
    # out towards white has an unreliable hue (a red core at dusk reads orange), so it does
    # not vote; its halo does.
    lit_fraction: float = 0.5
    min_lit_level: int = 60
    min_saturation: float = 0.3
    # Red wraps around 0 and leans orange on camera; amber spans orange to yellow; signal
    # green is blue-green.
    red_hue_below: int = 12
    red_hue_from: int = 165
    amber_hue_below: int = 36
    green_hue_from: int = 40
    green_hue_below: int = 100
    # Votes (in pixels, weighted by saturation and brightness) the colour cue needs to decide
    # at all, and the share of them the winner must hold. A real head decoded at 1/2 or 1/4
    # scale is a few pixels across and its lit lamp may cast only a fraction of a vote.
    min_votes: float = 0.1
    min_vote_share: float = 0.6
    # A vote from the colour's own third of the head counts this much extra: the halo of a
    # lit lamp spills over its neighbours, but its heart is in its own third.
    own_third_weight: float = 2.0
    # A head longer than this along its lamps (a near camera's, at full resolution) is
    # area-averaged down first: past a dozen pixels a lamp, detail adds cost, not accuracy.
    max_head_px: int = 36


DEFAULT_READER = ReaderSettings()


class Cue(StrEnum):
    """Which cue a reading rests on."""

    COLOUR = "colour"
    POSITION = "position"


@dataclass(frozen=True, slots=True)
class LampReading:
    """One picture's verdict: ``state``, and the cue that gave it."""

    state: LightState
    cue: Cue


def along_axis(head: HeadImage, layout: LampLayout) -> HeadImage:
    """The head turned so that its lamps run down axis 0, red first.

    >>> along_axis(np.zeros((4, 12), np.uint8), LampLayout.HORIZONTAL).shape
    (12, 4)
    """
    return head if layout is LampLayout.VERTICAL else head.swapaxes(0, 1)


def crop_head(
    picture: HeadImage, *, roi_xywh: tuple[int, int, int, int], factor: float
) -> HeadImage:
    """The roi (in source pixels) cut from a picture ``factor`` times the source's size.

    The cut is rounded outwards, so a head a few pixels across keeps every pixel it touches.

    >>> crop_head(np.zeros((270, 480, 3), np.uint8), roi_xywh=(1683, 75, 9, 22), factor=0.25).shape
    (7, 3, 3)
    """
    height, width = picture.shape[:2]
    x, y, w, h = roi_xywh
    x0, y0 = min(math.floor(x * factor), width - 1), min(math.floor(y * factor), height - 1)
    x1 = min(max(math.ceil((x + w) * factor), x0 + 1), width)
    y1 = min(max(math.ceil((y + h) * factor), y0 + 1), height)
    return picture[y0:y1, x0:x1]


def _thirds(length: int) -> tuple[slice, slice, slice]:
    """Three slices covering ``length`` rows, each at least one row long."""
    bounds = [length * i // 3 for i in range(4)]
    return (
        slice(bounds[0], max(bounds[1], bounds[0] + 1)),
        slice(bounds[1], max(bounds[2], bounds[1] + 1)),
        slice(bounds[2], max(bounds[3], bounds[2] + 1)),
    )


def lamp_levels(roi_grey: GreyImage) -> tuple[float, float, float]:
    """Brightness of the first, middle and last thirds (along axis 0) of a lamp head.

    Each level is the mean of the brightest quarter of the third's pixels, so a lamp that
    fills only part of its third (or a roi with margins around the head) still reads as lit,
    and single noisy pixels do not.
    """
    levels = []
    for rows in _thirds(roi_grey.shape[0]):
        third = roi_grey[rows]
        size = third.size
        top = max(size // 4, 1)
        # Only which values are in the top quarter matters, not their order, so a partition
        # will do; their integer sum over their count is the mean np.mean would give (the
        # float64 sum of small integers is exact, and both divisions round the same quotient).
        brightest = np.partition(third, size - top, axis=None)[size - top :]
        levels.append(int(brightest.sum()) / top)
    return (levels[0], levels[1], levels[2])


def read_by_position(
    levels: tuple[float, float, float], settings: ReaderSettings = DEFAULT_READER
) -> LightState:
    """The lit lamp from the thirds' levels alone, relative to the darkest third.

    >>> read_by_position((100.0, 80.0, 80.0)), read_by_position((90.0, 90.0, 20.0))
    (<LightState.RED: 'red'>, <LightState.UNKNOWN: 'unknown'>)
    """
    floor = min(levels)
    contrast = [level - floor for level in levels]
    # The first of equal maxima, as np.argmax picks, without making an array of three.
    best = max(range(3), key=contrast.__getitem__)
    runner_up = max(c for i, c in enumerate(contrast) if i != best)
    if contrast[best] < settings.min_contrast or runner_up > contrast[best] / 2:
        return LightState.UNKNOWN
    return _LAMPS[best]


def colour_votes(
    head_bgr: HeadImage, settings: ReaderSettings = DEFAULT_READER
) -> tuple[float, float, float]:
    """Red, amber and green votes of a BGR head whose lamps run down axis 0.

    A lit-looking pixel adds its saturation times how far it stands above the lit threshold
    (0 at the threshold, 1 at the head's brightest) to the vote of its hue, and more again
    (``own_third_weight``) when it lies in that colour's own third of the head. The
    brightness ramp keeps the fringe where a red halo tints an amber lens orange, and a
    sunlit tree behind the head, from outvoting the lamp itself.
    """
    height, width = head_bgr.shape[:2]
    hsv = np.asarray(cv2.cvtColor(np.ascontiguousarray(head_bgr), cv2.COLOR_BGR2HSV))
    hsv = hsv.reshape(-1, 3)
    value = hsv[:, 2]
    brightest = int(value.max())
    threshold = max(settings.min_lit_level, int(settings.lit_fraction * brightest))
    if brightest <= threshold:
        return (0.0, 0.0, 0.0)
    # Only the few lit pixels are worked on from here: a head is mostly dark housing.
    lit = np.flatnonzero((value > threshold) & (hsv[:, 1] >= settings.min_saturation * 255))
    if lit.size == 0:
        return (0.0, 0.0, 0.0)
    picked = hsv[lit].astype(np.float32)
    weight = (picked[:, 2] - threshold) / (brightest - threshold) * picked[:, 1] / 255
    colour = _hue_classes(settings)[hsv[lit, 0]]
    bounds = [height * i // 3 for i in (1, 2)]
    third = np.searchsorted(bounds, lit // width, side="right")
    own = colour == third
    votes = np.bincount(colour, weights=weight, minlength=4) + settings.own_third_weight * (
        np.bincount(colour[own], weights=weight[own], minlength=4)
    )
    return (float(votes[0]), float(votes[1]), float(votes[2]))


@functools.cache
def _hue_classes(settings: ReaderSettings) -> npt.NDArray[np.intp]:
    """Per OpenCV hue (0..179): 0 red, 1 amber, 2 green, 3 none of them."""
    hue = np.arange(180)
    classes = np.full(180, 3, np.intp)
    classes[(hue >= settings.green_hue_from) & (hue < settings.green_hue_below)] = 2
    classes[(hue >= settings.red_hue_below) & (hue < settings.amber_hue_below)] = 1
    classes[(hue < settings.red_hue_below) | (hue >= settings.red_hue_from)] = 0
    return classes


def read_lamp_head(
    head: HeadImage, *, layout: LampLayout, settings: ReaderSettings = DEFAULT_READER
) -> LampReading:
    """Which lamp a single picture of the head shows lit (greyscale or BGR, any layout).

    >>> head = np.zeros((24, 8, 3), np.uint8); head[17:23, 1:7] = (90, 255, 60)
    >>> read_lamp_head(head, layout=LampLayout.VERTICAL)
    LampReading(state=<LightState.GREEN: 'green'>, cue=<Cue.COLOUR: 'colour'>)
    >>> read_lamp_head(head[..., 1], layout=LampLayout.VERTICAL)
    LampReading(state=<LightState.GREEN: 'green'>, cue=<Cue.POSITION: 'position'>)
    """
    if head.size == 0:
        return LampReading(state=LightState.UNKNOWN, cue=Cue.POSITION)
    oriented = along_axis(_shrunk(head, layout, settings.max_head_px), layout)
    if oriented.ndim == 3:
        votes = colour_votes(oriented, settings)
        total = sum(votes)
        if total >= settings.min_votes:
            ranked = sorted(range(3), key=votes.__getitem__, reverse=True)
            state = (
                _LAMPS[ranked[0]] if votes[ranked[0]] >= settings.min_vote_share * total else None
            )
            if state is None or state is LightState.AMBER:
                by_position = read_by_position(lamp_levels(_brightest_channel(oriented)), settings)
                if state is None and by_position in (_LAMPS[ranked[0]], _LAMPS[ranked[1]]):
                    # The colour is torn between two lamps (a red lamp that blooms orange
                    # halfway to amber): the one lit by position is it.
                    state = by_position
                elif state is LightState.AMBER and by_position is LightState.RED:
                    # A red lamp blown out to yellow, with only a red rim: its hue is
                    # amber's, but the lamp lit is the red one, and the amber one is dark.
                    state = LightState.RED
            return LampReading(state=state or LightState.UNKNOWN, cue=Cue.COLOUR)
        grey = _brightest_channel(oriented)
    else:
        grey = oriented
    return LampReading(state=read_by_position(lamp_levels(grey), settings), cue=Cue.POSITION)


def _brightest_channel(head_bgr: HeadImage) -> GreyImage:
    return np.asarray(head_bgr.max(axis=2), np.uint8)


def _shrunk(head: HeadImage, layout: LampLayout, max_length_px: int) -> HeadImage:
    """The head area-averaged down to ``max_length_px`` along its lamps, if it is longer."""
    height, width = head.shape[:2]
    length = height if layout is LampLayout.VERTICAL else width
    if length <= max_length_px:
        return head
    factor = max_length_px / length
    size_wh = (max(round(width * factor), 1), max(round(height * factor), 1))
    return np.asarray(cv2.resize(head, size_wh, interpolation=cv2.INTER_AREA), np.uint8)


@dataclass(frozen=True, slots=True)
class SignalChange:
    """The confirmed state from ``frame`` onwards."""

    frame: int
    state: LightState


class SignalTimeline:
    """Smooths raw readings and answers "what did the light show at frame N?".

    A new state is confirmed after ``confirm_frames`` consecutive equal readings and is then
    dated back to the first of them, so smoothing costs latency, not accuracy. The state at
    frame N is final once no run of readings that could still confirm a change began at or
    before N: while the light reads as confirmed, at once; during a run of a new colour, up
    to the frame before the run. Unknown readings (glare, a passing truck) keep the last
    confirmed state.

    >>> timeline = SignalTimeline(confirm_frames=3)
    >>> for frame in range(4):
    ...     _ = timeline.update(frame=frame, reading=LightState.RED)
    >>> timeline.decided_through  # red since frame 0, and still red
    3
    >>> _ = timeline.update(frame=4, reading=LightState.GREEN)
    >>> timeline.decided_through  # green from frame 4 would be dated there
    3
    >>> _ = timeline.update(frame=5, reading=LightState.RED)
    >>> timeline.decided_through  # the green run broke off
    5
    """

    def __init__(self, *, confirm_frames: int = 3, history: int = 256) -> None:
        self._confirm = confirm_frames
        self._changes: deque[SignalChange] = deque(maxlen=history)
        self._run_state = LightState.UNKNOWN
        self._run_start = 0
        self._run_length = 0
        self._last_frame = -1

    @property
    def state(self) -> LightState:
        """The latest confirmed state."""
        return self._changes[-1].state if self._changes else LightState.UNKNOWN

    @property
    def decided_through(self) -> int:
        """The last frame whose state can no longer change."""
        if self._run_state in (LightState.UNKNOWN, self.state):
            return self._last_frame
        return self._run_start - 1

    def update(self, *, frame: int, reading: LightState) -> SignalChange | None:
        """Add one raw reading; returns the change it confirms, if any."""
        self._last_frame = frame
        if reading == self._run_state:
            self._run_length += 1
        else:
            self._run_state, self._run_start, self._run_length = reading, frame, 1
        if self._run_length == self._confirm and reading not in (LightState.UNKNOWN, self.state):
            change = SignalChange(frame=self._run_start, state=reading)
            self._changes.append(change)
            return change
        return None

    def state_at(self, frame: int) -> LightState:
        """The confirmed state at ``frame`` (final only up to :attr:`decided_through`)."""
        for change in reversed(self._changes):
            if change.frame <= frame:
                return change.state
        return LightState.UNKNOWN
