"""Persistent foreground: what stays put over the window, not what passes through it."""

from __future__ import annotations

import numpy as np

from services.detector.tracker.persistence import PersistentForeground


def test_standing_block_persists_and_passing_block_does_not() -> None:
    persistence = PersistentForeground(frames=10)
    standing = None
    for frame in range(12):
        mask = np.zeros((20, 60), np.uint8)
        mask[2:8, 2:10] = 255  # stands
        mask[12:18, 5 * frame : 5 * frame + 8] = 255  # drives past, 5 px a frame
        if frame == 5:
            mask[2:8, 2:10] = 0  # one flicker of a faint body
        standing = persistence.update(mask)
    assert standing is not None
    assert (standing[2:8, 2:10] == 255).all()
    assert not standing[12:18].any()


def test_nothing_until_the_window_is_full() -> None:
    persistence = PersistentForeground(frames=3)
    mask = np.full((4, 4), 255, np.uint8)
    assert persistence.update(mask) is None
    assert persistence.update(mask) is None
    assert persistence.update(mask) is not None
