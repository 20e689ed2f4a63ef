"""Foreground that stays put: where vehicles stand, whatever passes by.

A standing vehicle keeps its pixels in the foreground frame after frame, while traffic that
passes close by (and may share its blob for seconds on end) covers any one pixel only
briefly. Counting, per pixel, how many of the last few frames were foreground separates the
two, so a vehicle that stopped while merged with passing traffic is still seen standing.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from services.common.arrays import Mask

# A pixel stands if it was foreground in this share of the window: a faint vehicle's mask
# flickers, a passing one covers a pixel for a fraction of it.
STANDING_SHARE = 0.8


class PersistentForeground:
    """Per-pixel count of foreground frames over a sliding window of ``frames`` frames."""

    def __init__(self, *, frames: int) -> None:
        self._frames = max(2, frames)
        self._window: deque[npt.NDArray[np.bool_]] = deque()
        self._count: npt.NDArray[np.uint16] | None = None
        self._needed = max(1, round(STANDING_SHARE * self._frames))

    @property
    def frames(self) -> int:
        return self._frames

    def update(self, mask: Mask) -> Mask | None:
        """Add this frame's mask (0/255); returns the mask (0/255) of pixels that were
        foreground in most of the window, or None until the window is full.

        >>> p = PersistentForeground(frames=2)
        >>> m = np.zeros((2, 2), np.uint8); m[0, 0] = 255
        >>> p.update(m) is None, p.update(m).tolist()
        (True, [[255, 0], [0, 0]])
        """
        foreground = mask > 0
        if self._count is None or self._count.shape != mask.shape:
            self._count = np.zeros(mask.shape, np.uint16)
            self._window.clear()
        self._count += foreground
        self._window.append(foreground)
        if len(self._window) > self._frames:
            self._count -= self._window.popleft()
        if len(self._window) < self._frames:
            return None
        return (self._count >= self._needed).astype(np.uint8) * 255
