"""Scores of one replayed dev-set clip against its hand labels, and their sum over clips.

Violations are matched by :func:`services.detector.evaluate.evaluate` (one-to-one, within a
time tolerance). The signal is scored per frame: the state the detector holds at a frame
against the labelled state, leaving out ``guard_s`` either side of each labelled change
(where a human cannot place the change to the frame either) and spans labelled ``unknown``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from services.common.events import ViolationType
from services.detector.devset.labels import ClipLabels, SignalSpan
from services.detector.evaluate import Occurrence, TypeScore, evaluate

UNKNOWN = "unknown"
DEFAULT_GUARD_S = 0.5


@dataclass(frozen=True, slots=True)
class SignalScore:
    """Per-frame agreement of the held signal state with the labels."""

    frames_scored: int
    frames_correct: int
    # The first frame at which the detector holds any state but unknown (None: never).
    first_known_frame: int | None
    # truth state -> held state -> frames, over the scored frames.
    confusion: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float | None:
        return self.frames_correct / self.frames_scored if self.frames_scored else None

    def to_dict(self, *, fps: float) -> dict[str, Any]:
        first = self.first_known_frame
        return {
            "frames_scored": self.frames_scored,
            "frames_correct": self.frames_correct,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "first_known_frame": first,
            "first_known_s": None if first is None else round(first / fps, 3),
            "confusion": {truth: dict(held) for truth, held in self.confusion.items()},
        }


def score_signal(
    spans: Sequence[SignalSpan], held: Sequence[str], *, fps: float, guard_s: float
) -> SignalScore:
    """Score the states held per frame (``held[i]`` at frame ``i``) against labelled spans.

    A labelled frame the detector never reached counts as ``unknown``, so as wrong.

    >>> spans = [SignalSpan(first_frame=0, last_frame=9, state="red"),
    ...          SignalSpan(first_frame=10, last_frame=19, state="green")]
    >>> held = ["unknown"] * 2 + ["red"] * 9 + ["green"] * 9   # changes 1 frame late
    >>> s = score_signal(spans, held, fps=10, guard_s=0.2)      # frames 8-11 left out
    >>> (s.frames_scored, s.frames_correct, s.first_known_frame)
    (16, 14, 2)
    """
    guard = round(guard_s * fps)
    changes = [b.first_frame for a, b in pairwise(spans) if a.state != b.state]
    confusion: dict[str, Counter[str]] = {}
    scored = correct = 0
    for span in spans:
        if span.state == UNKNOWN:
            continue
        for frame in range(span.first_frame, span.last_frame + 1):
            if any(change - guard <= frame < change + guard for change in changes):
                continue
            state = held[frame] if frame < len(held) else UNKNOWN
            confusion.setdefault(span.state, Counter())[state] += 1
            scored += 1
            correct += state == span.state
    first_known = next((i for i, state in enumerate(held) if state != UNKNOWN), None)
    return SignalScore(
        frames_scored=scored,
        frames_correct=correct,
        first_known_frame=first_known,
        confusion=confusion,
    )


@dataclass(frozen=True, slots=True)
class ClipScore:
    clip: str
    final: bool
    fps: float
    frames_read: int
    frames_dropped: int
    red_light: TypeScore
    parking: TypeScore
    signal: SignalScore | None
    replay_fps: float

    @property
    def parking_false_alarms(self) -> int:
        return self.parking.detected - self.parking.matched

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": self.clip,
            "final": self.final,
            "fps": self.fps,
            "frames_read": self.frames_read,
            "frames_dropped": self.frames_dropped,
            "replay_fps": round(self.replay_fps, 1),
            "red_light": _type_dict(self.red_light),
            "illegal_parking": _type_dict(self.parking),
            "parking_false_alarms": self.parking_false_alarms,
            "signal": None if self.signal is None else self.signal.to_dict(fps=self.fps),
        }


def _type_dict(score: TypeScore) -> dict[str, Any]:
    return {
        **score.to_dict(),
        "missed_frames": list(score.missed_frames),
        "false_alarm_frames": list(score.false_alarm_frames),
    }


def score_clip(
    labels: ClipLabels,
    *,
    detected: list[Occurrence],
    held_signal: Sequence[str] | None,
    frames_read: int,
    frames_dropped: int,
    replay_fps: float,
    tolerance_s: Mapping[ViolationType, float] | None = None,
    guard_s: float = DEFAULT_GUARD_S,
) -> ClipScore:
    """Score one clip's detections; ``held_signal`` is None for a scene with no signal."""
    truth = [
        Occurrence(ViolationType.RED_LIGHT, c.frame, bbox_xywh=c.bbox_xywh)
        for c in labels.red_light
    ] + [
        Occurrence(ViolationType.ILLEGAL_PARKING, p.frame, bbox_xywh=p.bbox_xywh)
        for p in labels.illegal_parking
    ]
    scores = evaluate(truth, detected, fps=labels.fps, tolerance_s=tolerance_s)
    red_light = _forgive_uncertain(
        scores[ViolationType.RED_LIGHT], labels, fps=labels.fps, tolerance_s=tolerance_s
    )
    signal = (
        score_signal(labels.signal, held_signal, fps=labels.fps, guard_s=guard_s)
        if held_signal is not None and labels.signal
        else None
    )
    return ClipScore(
        clip=labels.clip,
        final=labels.final,
        fps=labels.fps,
        frames_read=frames_read,
        frames_dropped=frames_dropped,
        red_light=red_light,
        parking=scores[ViolationType.ILLEGAL_PARKING],
        signal=signal,
        replay_fps=replay_fps,
    )


def _forgive_uncertain(
    score: TypeScore,
    labels: ClipLabels,
    *,
    fps: float,
    tolerance_s: Mapping[ViolationType, float] | None,
) -> TypeScore:
    """Take the false alarms that match an uncertain crossing out of the count."""
    uncertain = [
        Occurrence(ViolationType.RED_LIGHT, c.frame, bbox_xywh=c.bbox_xywh)
        for c in labels.red_light_uncertain
    ]
    if not uncertain or not score.false_alarms:
        return score
    forgiven = evaluate(uncertain, list(score.false_alarms), fps=fps, tolerance_s=tolerance_s)
    left = forgiven[ViolationType.RED_LIGHT].false_alarms
    return replace(score, detected=score.matched + len(left), false_alarms=left)


@dataclass(frozen=True, slots=True)
class DevsetTotal:
    """Counts pooled over the clips whose labels are final (micro-averaged precision,
    recall and accuracy); draft clips are scored and shown but not added in."""

    clips: int
    frames: int  # decoded and processed
    red_light: TypeScore
    parking_false_alarms: int
    # Labelled parking violations, and those an event matched.
    parked_labelled: int
    parked_found: int
    signal_frames_scored: int
    signal_frames_correct: int

    @classmethod
    def of(cls, scores: Sequence[ClipScore]) -> DevsetTotal:
        final = [s for s in scores if s.final]
        signals = [s.signal for s in final if s.signal is not None]
        return cls(
            clips=len(final),
            frames=sum(s.frames_read - s.frames_dropped for s in final),
            red_light=TypeScore(
                type=ViolationType.RED_LIGHT,
                truth=sum(s.red_light.truth for s in final),
                detected=sum(s.red_light.detected for s in final),
                matched=sum(s.red_light.matched for s in final),
                mean_abs_error_s=None,
                max_abs_error_s=None,
            ),
            parking_false_alarms=sum(s.parking_false_alarms for s in final),
            parked_labelled=sum(s.parking.truth for s in final),
            parked_found=sum(s.parking.matched for s in final),
            signal_frames_scored=sum(s.frames_scored for s in signals),
            signal_frames_correct=sum(s.frames_correct for s in signals),
        )

    @property
    def signal_accuracy(self) -> float | None:
        scored = self.signal_frames_scored
        return self.signal_frames_correct / scored if scored else None

    def to_dict(self) -> dict[str, Any]:
        accuracy = self.signal_accuracy
        red = self.red_light
        return {
            "clips": self.clips,
            "frames": self.frames,
            "runners": red.truth,
            "detected": red.detected,
            "matched": red.matched,
            "precision": round(red.precision, 4),
            "recall": round(red.recall, 4),
            "parking_false_alarms": self.parking_false_alarms,
            "parked_labelled": self.parked_labelled,
            "parked_found": self.parked_found,
            "signal_frames_scored": self.signal_frames_scored,
            "signal_accuracy": None if accuracy is None else round(accuracy, 4),
        }
