"""Per-frame accuracy of the signal state a detector held, against labelled truth.

Issue 13's goal: the state is known within one second of the first frame, and right on at
least 98% of the frames that lie more than half a second from a change of the true state
(a reader confirms a change a few frames late, and a label's change frame is itself only
good to a frame or two). The first half second is left out too: the start is what the
one-second goal is about. Frames whose truth is unlabelled (None) or labelled ``unknown``
(no lamp visibly lit) are not scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Frames closer than this to a change of the true state are not scored.
GUARD_S = 0.5
# The state must be known (not ``unknown``) from this long after the first frame on.
KNOWN_WITHIN_S = 1.0


@dataclass(frozen=True, slots=True)
class SignalScore:
    """How well held states match the truth over one clip."""

    frames: int
    scored: int
    correct: int
    # Seconds from the first frame to the first frame with a known (held) state; None if never.
    first_known_s: float | None

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else 1.0

    @property
    def known_in_time(self) -> bool:
        return self.first_known_s is not None and self.first_known_s <= KNOWN_WITHIN_S

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "scored": self.scored,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "first_known_s": self.first_known_s,
        }


def score_signal(
    truth: Sequence[str | None], held: Sequence[str], *, fps: float, guard_s: float = GUARD_S
) -> SignalScore:
    """Score ``held[i]`` (the state the detector held at frame i) against ``truth[i]``.

    >>> truth = ["red"] * 10 + ["green"] * 10
    >>> held = ["unknown"] * 2 + ["red"] * 10 + ["green"] * 8
    >>> s = score_signal(truth, held, fps=10, guard_s=0.3)
    >>> (s.scored, s.correct, s.first_known_s)
    (12, 12, 0.2)
    """
    if len(truth) != len(held):
        raise ValueError(f"{len(truth)} truth frames but {len(held)} held states")
    guard = round(guard_s * fps)
    changes = [0] + [i for i in range(1, len(truth)) if truth[i] != truth[i - 1]]
    scored = correct = 0
    for i, (true_state, state) in enumerate(zip(truth, held, strict=True)):
        if true_state in (None, "unknown") or any(abs(i - c) < guard for c in changes):
            continue
        scored += 1
        correct += state == true_state
    first_known = next((i for i, state in enumerate(held) if state != "unknown"), None)
    return SignalScore(
        frames=len(truth),
        scored=scored,
        correct=correct,
        first_known_s=None if first_known is None else round(first_known / fps, 3),
    )
