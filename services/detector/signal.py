"""Traffic-light state from the lamp head's region of interest.

The contracts fix the head's layout (a vertical 3-lamp head: red top, amber middle, green
bottom), so the state is *which third is lit*, read in greyscale. That keeps the hot path
on a greyscale decode and does not depend on how a renderer or a camera tints the lamps:
a lit lamp is always brighter than the same lamp unlit. Each lamp's unlit level is learnt
while it is dark, which copes with heads whose unlit lamps are grey rather than black.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from services.common.arrays import GreyImage


class LightState(StrEnum):
    RED = "red"
    AMBER = "amber"
    GREEN = "green"
    UNKNOWN = "unknown"


_LAMPS = (LightState.RED, LightState.AMBER, LightState.GREEN)


def lamp_levels(roi_grey: GreyImage) -> tuple[float, float, float]:
    """Brightness of the top, middle and bottom thirds of a lamp-head ROI.

    Each level is the mean of the brightest quarter of the third's pixels, so a lamp that
    fills only part of its third (or a ROI with margins around the head) still reads as lit,
    and single noisy pixels do not.
    """
    height = roi_grey.shape[0]
    levels = []
    for i in range(3):
        third = roi_grey[height * i // 3 : max(height * (i + 1) // 3, height * i // 3 + 1)]
        size = third.size
        top = max(size // 4, 1)
        # Only which values are in the top quarter matters, not their order, so a partition
        # will do; their integer sum over their count is the mean np.mean would give (the
        # float64 sum of small integers is exact, and both divisions round the same quotient).
        brightest = np.partition(third, size - top, axis=None)[size - top :]
        levels.append(int(brightest.sum()) / top)
    return (levels[0], levels[1], levels[2])


class LampClassifier:
    """Turns lamp levels into a raw (unsmoothed) state, learning each lamp's unlit level.

    ``min_contrast`` is in grey levels: a lit lamp must outshine its own unlit level by this
    much, and by twice as much as any other lamp does, or the reading is unknown.
    """

    def __init__(self, *, min_contrast: float = 12.0, leak_per_frame: float = 0.05) -> None:
        self._min_contrast = min_contrast
        # Unlit levels may rise (dawn, illumination drift); the leak lets them follow slowly.
        self._leak = leak_per_frame
        self._off: list[float] | None = None

    def classify(self, levels: tuple[float, float, float]) -> LightState:
        if self._off is None:
            # Until a lamp has been seen dark, assume all three share the darkest one's level.
            self._off = [min(levels)] * 3
        self._off = [min(lv, off + self._leak) for lv, off in zip(levels, self._off, strict=True)]
        contrast = [lv - off for lv, off in zip(levels, self._off, strict=True)]
        # The first of equal maxima, as np.argmax picks, without making an array of three.
        best = max(range(3), key=contrast.__getitem__)
        runner_up = max(c for i, c in enumerate(contrast) if i != best)
        if contrast[best] < self._min_contrast or runner_up > contrast[best] / 2:
            return LightState.UNKNOWN
        return _LAMPS[best]


@dataclass(frozen=True, slots=True)
class SignalChange:
    """The confirmed state from ``frame`` onwards."""

    frame: int
    state: LightState


class SignalTimeline:
    """Smooths raw readings and answers "what did the light show at frame N?".

    A new state is confirmed after ``confirm_frames`` consecutive equal readings and is then
    dated back to the first of them, so smoothing costs latency, not accuracy: the state at
    frame N is final once frame ``N + confirm_frames - 1`` has been read. Unknown readings
    (glare, a passing truck) keep the last confirmed state.
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
        return self._last_frame - self._confirm + 1

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
