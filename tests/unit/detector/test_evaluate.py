"""Matching detected events to truth: tolerances, one-to-one, per type."""

from __future__ import annotations

import json
from pathlib import Path

from services.common.events import ViolationType
from services.detector.evaluate import Occurrence, evaluate, load_truth

RED, PARK = ViolationType.RED_LIGHT, ViolationType.ILLEGAL_PARKING


def test_tolerance_and_one_to_one_matching() -> None:
    truth = [Occurrence(RED, 100), Occurrence(RED, 300), Occurrence(PARK, 500)]
    detected = [
        Occurrence(RED, 110),  # 1.0 s late: matches
        Occurrence(RED, 112),  # a second event for the same truth: a false alarm
        Occurrence(RED, 320),  # 2.0 s late: outside 1.5 s
        Occurrence(PARK, 525),  # 2.5 s: within parking's 3 s
    ]
    scores = evaluate(truth, detected, fps=10)
    red, park = scores[RED], scores[PARK]
    assert (red.truth, red.detected, red.matched) == (2, 3, 1)
    assert red.precision == 1 / 3 and red.recall == 0.5
    assert red.mean_abs_error_s == 1.0
    assert (park.matched, park.precision, park.recall) == (1, 1.0, 1.0)


def test_camera_must_agree_when_both_name_one() -> None:
    truth = [Occurrence(RED, 100, "cam-a")]
    scores = evaluate(truth, [Occurrence(RED, 100, "cam-b")], fps=10)
    assert scores[RED].matched == 0


def test_place_must_agree_when_both_carry_a_box() -> None:
    """A rider elsewhere in the picture at the same moment is not the labelled runner; a
    box a few frames on from the crossing, or an event without one, still matches."""
    runner = (200.0, 300.0, 40.0, 80.0)
    truth = [Occurrence(RED, 100, bbox_xywh=runner)]
    elsewhere = evaluate(truth, [Occurrence(RED, 100, bbox_xywh=(90.0, 170.0, 48.0, 80.0))], fps=6)
    further_on = evaluate(
        truth, [Occurrence(RED, 103, bbox_xywh=(205.0, 250.0, 38.0, 70.0))], fps=6
    )
    no_box = evaluate(truth, [Occurrence(RED, 100)], fps=6)
    assert [s[RED].matched for s in (elsewhere, further_on, no_box)] == [0, 1, 1]


def test_truth_file_kinds_and_fps(tmp_path: Path) -> None:
    lines = [
        {"kind": "frame", "frame": 0, "ts_ms": 1000},
        {"kind": "violation", "type": "red_light", "frame": 12, "ts_ms": 1480},
        {"type": "illegal_parking", "frame": 40, "ts_ms": 2600},  # no kind: a violation
        {"kind": "frame", "frame": 50, "ts_ms": 3000},
    ]
    path = tmp_path / "truth.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    violations, fps = load_truth(path)
    assert [v.type for v in violations] == [RED, PARK]
    assert fps == 25.0
