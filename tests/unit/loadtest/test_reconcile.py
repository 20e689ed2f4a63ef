"""Reconciling control-center entries against the simulators' ground truth."""

from __future__ import annotations

from services.common.events import ViolationType
from services.loadtest.reconcile import (
    Entry,
    HandoverWindow,
    SourceDrop,
    TrueViolation,
    percentiles,
    reconcile,
)

RED, PARK = ViolationType.RED_LIGHT, ViolationType.ILLEGAL_PARKING
WINDOW = (0, 100_000)


def truth(ts_ms: int, camera: str = "c1", kind: ViolationType = RED) -> TrueViolation:
    return TrueViolation(camera_id=camera, type=kind, ts_ms=ts_ms)


def entry(ts_ms: int, camera: str = "c1", kind: ViolationType = RED, n: int = 0) -> Entry:
    return Entry(f"{camera}:{kind.value}:{n:06d}:{ts_ms}", camera, kind, ts_ms, ts_ms + 300)


def test_each_truth_found_once_is_clean() -> None:
    result = reconcile(
        [truth(10_000), truth(20_000, kind=PARK)],
        [entry(10_100), entry(21_500, kind=PARK)],
        window_ms=WINDOW,
    )
    assert result.counts() == {
        "expected": 2, "found": 2, "lost": 0, "lost_in_handover": 0, "lost_at_source": 0,
        "duplicated": 0, "extra": 0,
    }  # fmt: skip


def test_the_same_violation_twice_is_a_duplicate_and_a_stranger_is_extra() -> None:
    result = reconcile(
        [truth(10_000)],
        [entry(10_000), entry(10_200, n=1), entry(50_000), entry(10_000, camera="c2")],
        window_ms=WINDOW,
    )
    assert len(result.duplicated) == 1 and result.duplicated[0].ts_ms == 10_200
    assert sorted(e.ts_ms for e in result.extra) == [10_000, 50_000]
    assert sorted(e.camera_id for e in result.extra) == ["c1", "c2"]


def test_losses_are_filed_by_cause() -> None:
    result = reconcile(
        [truth(10_000), truth(30_000), truth(60_000, kind=PARK), truth(80_000, camera="c2")],
        [],
        window_ms=WINDOW,
        handovers=[HandoverWindow("c1", 29_000, 31_000), HandoverWindow("c1", 40_000, 45_000)],
        source_drops=[SourceDrop("c2", 79_500)],
    )
    # The parking violation at 60 s rests on the 25 s before it: the second handover.
    assert [t.ts_ms for t in result.lost_in_handover] == [30_000, 60_000]
    assert [t.ts_ms for t in result.lost_at_source] == [80_000]
    assert [t.ts_ms for t in result.lost] == [10_000]


def test_only_the_window_is_scored() -> None:
    result = reconcile([truth(5_000), truth(50_000)], [entry(5_000)], window_ms=(10_000, 60_000))
    assert result.expected == 1 and len(result.lost) == 1 and not result.extra


def test_a_pair_that_straddles_the_window_edge_is_neither_lost_nor_extra() -> None:
    window = (10_000, 60_000)
    # A truth just before the start, reported just after it; one just inside the end,
    # reported just after it.
    result = reconcile(
        [truth(9_900), truth(59_900)], [entry(10_100), entry(60_400)], window_ms=window
    )
    assert result.counts() == {
        "expected": 1, "found": 0, "lost": 0, "lost_in_handover": 0, "lost_at_source": 0,
        "duplicated": 0, "extra": 0,
    }  # fmt: skip
    assert result.matched == 1


def test_percentiles_are_nearest_rank() -> None:
    assert percentiles(list(range(1, 101))) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert percentiles([]) == {}


def test_latency_runs_from_the_decided_frame_and_the_violation_frame() -> None:
    """A crossing dated back 1.6 s to where the vehicle met the line, decided on a later
    frame and entered 200 ms after that."""
    entry = Entry("c:red_light:000000:10000", "c", RED, 10_000, 11_800, decided_ts_ms=11_600)
    assert (entry.e2e_ms, entry.since_violation_ms) == (200, 1_800)
    undated = Entry("c:red_light:000000:10000", "c", RED, 10_000, 10_300)
    assert undated.e2e_ms == undated.since_violation_ms == 300
