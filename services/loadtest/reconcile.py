"""Reconcile the control center against the simulators' ground truth. Pure: no I/O.

Each true violation inside the scored window is matched, one to one and closest in time
first, to a control-center entry of the same camera and type within the type's tolerance
(``services.detector.evaluate.TOLERANCE_S``). What is left over is then classified:

- a true violation with no entry is ``lost_in_handover`` when its camera was being handed
  from one detector to another while its evidence was filmed (a :class:`HandoverWindow`
  overlapping the ``EVIDENCE_S`` before it), ``lost_at_source`` when the camera itself
  skipped a frame of that evidence (a :class:`SourceDrop`), and ``lost`` otherwise;
- an entry within tolerance of a true violation that already has its entry is
  ``duplicated``: the same violation reached the control center twice;
- any other entry in the window is ``extra`` (a false detection).

Entries and truths outside the window are not scored: a camera's first seconds are spent
learning its background, and a violation in the last seconds may not be decided yet. They
are still matched, so an entry inside the window for a truth just outside it is no extra.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.events import ViolationType
from services.detector.evaluate import TOLERANCE_S


@dataclass(frozen=True, slots=True)
class TrueViolation:
    camera_id: str
    type: ViolationType
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Entry:
    """A control-center entry: what the reconciliation and the latency figures need."""

    violation_id: str
    camera_id: str
    type: ViolationType
    ts_ms: int  # capture time of the violation's frame
    dispatched_ts_ms: int
    # Capture time of the frame the detector decided on (the event's ``decided_ts_ms``);
    # None for an event that does not say, which was decided on its own frame.
    decided_ts_ms: int | None = None

    @property
    def e2e_ms(self) -> int:
        """From the capture of the frame the detector decided on to the entry: the time
        the system took, which load stretches."""
        return self.dispatched_ts_ms - (self.decided_ts_ms or self.ts_ms)

    @property
    def since_violation_ms(self) -> int:
        """From the violation's own frame to the entry: ``e2e_ms`` plus however long the
        detector needed to see it was one (a coast over the line, a signal to decide)."""
        return self.dispatched_ts_ms - self.ts_ms


# A violation at ``ts`` is seen in the frames of this long before it: a red light in the
# crossing and the frames that confirm the signal, a parked vehicle over its whole dwell
# (15 s in the shipped scenes) plus the detector's stationary window.
EVIDENCE_S = {ViolationType.RED_LIGHT: 2.0, ViolationType.ILLEGAL_PARKING: 25.0}


def _evidence_ms(truth: TrueViolation) -> tuple[int, int]:
    return truth.ts_ms - int(EVIDENCE_S[truth.type] * 1000), truth.ts_ms + 1000


@dataclass(frozen=True, slots=True)
class HandoverWindow:
    """A camera in transit between detectors from ``start_ms`` to ``end_ms`` (wall clock)."""

    camera_id: str
    start_ms: int
    end_ms: int

    def covers(self, truth: TrueViolation) -> bool:
        first, last = _evidence_ms(truth)
        return truth.camera_id == self.camera_id and first <= self.end_ms and self.start_ms <= last


@dataclass(frozen=True, slots=True)
class SourceDrop:
    """A frame the camera skipped (it fell behind) and never sent."""

    camera_id: str
    ts_ms: int


@dataclass
class Reconciliation:
    expected: int = 0
    found: int = 0
    matched: int = 0
    lost: list[TrueViolation] = field(default_factory=list)
    lost_in_handover: list[TrueViolation] = field(default_factory=list)
    lost_at_source: list[TrueViolation] = field(default_factory=list)
    duplicated: list[Entry] = field(default_factory=list)
    extra: list[Entry] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The contract's ``violations`` object."""
        return {
            "expected": self.expected,
            "found": self.found,
            "lost": len(self.lost),
            "lost_in_handover": len(self.lost_in_handover),
            "lost_at_source": len(self.lost_at_source),
            "duplicated": len(self.duplicated),
            "extra": len(self.extra),
        }


def reconcile(
    truths: Sequence[TrueViolation],
    entries: Sequence[Entry],
    *,
    window_ms: tuple[int, int],
    handovers: Sequence[HandoverWindow] = (),
    source_drops: Sequence[SourceDrop] = (),
) -> Reconciliation:
    """Match ``entries`` to ``truths`` inside ``window_ms`` (see the module docstring).

    >>> t = TrueViolation("c", ViolationType.RED_LIGHT, 10_000)
    >>> e = Entry("c:red_light:000000:10000", "c", ViolationType.RED_LIGHT, 10_100, 10_400)
    >>> reconcile([t], [e, e], window_ms=(0, 20_000)).counts()["duplicated"]
    1
    """
    start, end = window_ms
    margin = int(max(TOLERANCE_S.values()) * 1000)
    # Truths and entries just outside the window still pair up, so that neither side of a
    # pair that straddles an edge is scored alone (a lost truth, an extra entry).
    nearby = [t for t in truths if start - margin <= t.ts_ms <= end + margin]
    candidates = [e for e in entries if start - margin <= e.ts_ms <= end + margin]
    scored = {ti for ti, t in enumerate(nearby) if start <= t.ts_ms <= end}
    truth_entry = _match(nearby, candidates)
    used = set(truth_entry.values())
    of_unscored = {ei for ti, ei in truth_entry.items() if ti not in scored}
    result = Reconciliation(
        expected=len(scored),
        found=sum(
            start <= e.ts_ms <= end for ei, e in enumerate(candidates) if ei not in of_unscored
        ),
        matched=sum(ti in scored for ti in truth_entry),
    )
    matched = [nearby[ti] for ti in truth_entry]
    for ei, entry in enumerate(candidates):
        if ei in used:
            continue
        if any(_compatible(t, entry) for t in matched):
            result.duplicated.append(entry)
        elif start <= entry.ts_ms <= end:
            result.extra.append(entry)
    drops: dict[str, list[int]] = defaultdict(list)
    for drop in source_drops:
        drops[drop.camera_id].append(drop.ts_ms)
    for ti in sorted(scored - truth_entry.keys()):
        truth = nearby[ti]
        _file_loss(result, truth, handovers=handovers, drops=drops.get(truth.camera_id, []))
    return result


def _match(truths: Sequence[TrueViolation], entries: Sequence[Entry]) -> dict[int, int]:
    """One to one, closest in time first: truth index -> entry index."""
    pairs = sorted(
        (abs(e.ts_ms - t.ts_ms), ti, ei)
        for ti, t in enumerate(truths)
        for ei, e in enumerate(entries)
        if _compatible(t, e)
    )
    truth_entry: dict[int, int] = {}
    used: set[int] = set()
    for _gap, ti, ei in pairs:
        if ti not in truth_entry and ei not in used:
            truth_entry[ti] = ei
            used.add(ei)
    return truth_entry


def _file_loss(
    result: Reconciliation,
    truth: TrueViolation,
    *,
    handovers: Sequence[HandoverWindow],
    drops: Sequence[int],
) -> None:
    first, last = _evidence_ms(truth)
    if any(h.covers(truth) for h in handovers):
        result.lost_in_handover.append(truth)
    elif any(first <= ts <= last for ts in drops):
        result.lost_at_source.append(truth)
    else:
        result.lost.append(truth)


def _compatible(truth: TrueViolation, entry: Entry) -> bool:
    return (
        truth.camera_id == entry.camera_id
        and truth.type == entry.type
        and abs(truth.ts_ms - entry.ts_ms) <= TOLERANCE_S[truth.type] * 1000
    )


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles, ``{"p50": ..}``; empty input gives an empty dict.

    >>> percentiles([1, 2, 3, 4, 100])
    {'p50': 3.0, 'p95': 100.0, 'p99': 100.0}
    """
    if not values:
        return {}
    ordered = sorted(values)
    out = {}
    for p in points:
        rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n), at least 1
        out[f"p{p}"] = float(ordered[min(rank, len(ordered)) - 1])
    return out
