"""The dev-set scorer: label files, per-frame signal scoring, matching, and the command."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml
from typer.testing import CliRunner

from services.cli import app
from services.common.config.loader import ConfigError, validate_data
from services.common.events import ViolationType
from services.detector.devset.labels import ClipLabels, SignalSpan, clip_dirs, load_clip
from services.detector.devset.score import DevsetTotal, score_clip, score_signal
from services.detector.evaluate import Occurrence
from tests.unit.detector.synth import FPS, HEIGHT, WIDTH, Vehicle, cycle, render, scene, straight

RED, PARK = ViolationType.RED_LIGHT, ViolationType.ILLEGAL_PARKING
runner = CliRunner()


def labels(**overrides: Any) -> ClipLabels:
    data: dict[str, Any] = {
        "schema": 1,
        "clip": "tiny",
        "video": "clip.avi",
        "fps": 10,
        "frames": 100,
        "final": True,
        "signal": [
            {"first_frame": 0, "last_frame": 39, "state": "green"},
            {"first_frame": 40, "last_frame": 99, "state": "red"},
        ],
        "red_light": [{"frame": 50}, {"frame": 80, "bbox_xywh": [1, 2, 3, 4]}],
        "illegal_parking": [],
    }
    data.update(overrides)
    return validate_data(ClipLabels, data, source="labels.json")


def spans(*parts: tuple[int, int, str]) -> list[SignalSpan]:
    return [
        SignalSpan.model_validate({"first_frame": a, "last_frame": b, "state": state})
        for a, b, state in parts
    ]


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"signal": [{"first_frame": 0, "last_frame": 50, "state": "red"}] * 2},
            "signal: spans must be in order and must not overlap",
        ),
        (
            {"signal": [{"first_frame": 0, "last_frame": 100, "state": "red"}]},
            "signal: a span ends after the last frame (99)",
        ),
        ({"red_light": [{"frame": 100}]}, "red_light: an event is after the last frame (99)"),
        (
            {"signal": [{"first_frame": 5, "last_frame": 4, "state": "red"}]},
            "signal[0]: last_frame must not be before first_frame",
        ),
        ({"signal": [{"first_frame": 0, "last_frame": 4, "state": "blue"}]}, "signal[0].state"),
        ({"schema": 2}, "schema: Input should be 1"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_labels_name_the_key(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        labels(**overrides)
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_signal_guard_unknown_spans_and_frames_never_reached() -> None:
    truth = spans((0, 9, "green"), (10, 14, "unknown"), (15, 29, "red"), (30, 39, "red"))
    held = ["unknown"] * 3 + ["green"] * 7 + ["amber"] * 10 + ["red"] * 14  # 34 of 40 frames
    score = score_signal(truth, held, fps=10, guard_s=0.2)
    # Guarded: 8-11 and 13-16; the unknown span is not scored; red to red is no change, so
    # nothing is guarded at 30; frames 34-39 were never reached and count as unknown.
    assert score.frames_scored == 8 + 13 + 10
    assert score.confusion == {
        "green": {"unknown": 3, "green": 5},
        "red": {"amber": 3, "red": 14, "unknown": 6},
    }
    assert score.frames_correct == 5 + 14
    assert score.first_known_frame == 3


def test_signal_changes_are_guarded_on_both_sides() -> None:
    truth = spans((0, 19, "green"), (20, 39, "red"))
    held = ["green"] * 22 + ["red"] * 18  # two frames late
    exact = score_signal(truth, held, fps=10, guard_s=0)
    guarded = score_signal(truth, held, fps=10, guard_s=0.5)
    assert (exact.frames_scored, exact.frames_correct) == (40, 38)
    assert (guarded.frames_scored, guarded.frames_correct) == (30, 30)
    assert score_signal(truth, ["unknown"] * 40, fps=10, guard_s=0).first_known_frame is None


def test_clip_score_matches_runners_and_counts_parking_false_alarms() -> None:
    detected = [
        Occurrence(RED, 58),  # 0.8 s after the crossing at 50: matched
        Occurrence(RED, 97),  # 1.7 s after 80: outside 1.5 s, a false alarm
        Occurrence(PARK, 60),  # no parking labelled: a false alarm
    ]
    score = score_clip(
        labels(),
        detected=detected,
        held_signal=["green"] * 40 + ["red"] * 60,
        frames_read=100,
        frames_dropped=0,
        replay_fps=50.0,
    )
    assert (score.red_light.matched, score.red_light.precision, score.red_light.recall) == (
        1,
        0.5,
        0.5,
    )
    assert score.red_light.missed_frames == (80,)
    assert score.red_light.false_alarm_frames == (97,)
    assert score.parking_false_alarms == 1
    assert score.signal is not None and score.signal.accuracy == 1.0
    wider = score_clip(
        labels(),
        detected=detected,
        held_signal=None,
        frames_read=100,
        frames_dropped=0,
        replay_fps=50.0,
        tolerance_s={RED: 2.0},
    )
    assert wider.red_light.recall == 1.0 and wider.signal is None
    total = DevsetTotal.of([score, wider])
    assert (total.red_light.truth, total.red_light.detected, total.red_light.matched) == (4, 4, 3)
    assert total.parking_false_alarms == 2 and total.signal_accuracy == 1.0
    assert (total.parked_found, total.parked_labelled) == (0, 0)
    # A labelled parking violation the event matches is found, not a false alarm.
    kerb = score_clip(
        labels(illegal_parking=[{"frame": 60, "zone": "kerb"}, {"frame": 90, "zone": "kerb"}]),
        detected=detected,
        held_signal=None,
        frames_read=100,
        frames_dropped=0,
        replay_fps=50.0,
    )
    both = DevsetTotal.of([score, kerb])
    assert (both.parked_found, both.parked_labelled, both.parking_false_alarms) == (1, 2, 1)
    assert total.to_dict()["recall"] == 0.75


def test_uncertain_crossings_are_neither_hits_nor_false_alarms_and_drafts_stay_out() -> None:
    draft = labels(final=False, red_light_uncertain=[{"frame": 70}])
    detected = [Occurrence(RED, 50), Occurrence(RED, 69), Occurrence(RED, 81)]
    score = score_clip(
        draft,
        detected=detected,
        held_signal=None,
        frames_read=100,
        frames_dropped=0,
        replay_fps=50.0,
    )
    red = score.red_light
    assert (red.truth, red.detected, red.matched) == (2, 2, 2)  # 81 matches 80; 69 forgiven
    assert red.false_alarm_frames == () and red.precision == 1.0
    assert DevsetTotal.of([score]).clips == 0 and score.to_dict()["final"] is False


def write_clip(root: Path, name: str, *, video: bool = True) -> Path:
    """A 12 s MJPG clip of one car running the red (its centre crosses the line at frame 56)."""
    folder = root / name
    folder.mkdir(parents=True)
    light = cycle(red=(40, 200))
    if video:
        car = Vehicle(path=straight(start_xy=(300, 370), velocity_xy=(0, -8), first=30))
        path = str(folder / "clip.avi")
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
        for index in range(120):
            writer.write(render(index, [car], light))
        writer.release()
    states = [light(i) for i in range(120)]
    changes = [0] + [i for i in range(1, 120) if states[i] != states[i - 1]] + [120]
    data = labels(
        clip=name,
        frames=120,
        signal=[
            {"first_frame": a, "last_frame": b - 1, "state": states[a]}
            for a, b in pairwise(changes)
        ],
        red_light=[{"frame": 56}],
    ).model_dump(mode="json", by_alias=True)
    (folder / "labels.json").write_text(json.dumps(data))
    (folder / "scene.yaml").write_text(json.dumps(scene().model_dump(mode="json")))
    return folder


def test_eval_devset_scores_every_clip(tmp_path: Path) -> None:
    write_clip(tmp_path, "street-a")
    out = tmp_path / "scores.json"
    events = tmp_path / "events"
    result = runner.invoke(
        app, ["eval-devset", str(tmp_path), "--json", str(out), "--events-dir", str(events)]
    )
    assert result.exit_code == 0, result.output
    (event,) = [json.loads(line) for line in (events / "street-a.jsonl").read_text().splitlines()]
    assert event["type"] == "red_light" and event["camera_id"] == "synth-cam"
    assert "street-a" in result.output and "1 clips with final labels, 120 frames" in result.output
    report = json.loads(out.read_text())
    (clip,) = report["clips"]
    assert clip["red_light"]["matched"] == 1 and clip["red_light"]["missed_frames"] == []
    assert clip["signal"]["accuracy"] >= 0.95
    assert report["total"]["recall"] == 1.0 and report["problems"] == []
    assert (report["total"]["parked_found"], report["total"]["parked_labelled"]) == (0, 0)
    assert "parking violations found 0 of 0, false alarms 0" in result.output


def test_eval_devset_reports_broken_clips_and_still_scores_the_rest(tmp_path: Path) -> None:
    write_clip(tmp_path, "street-a")
    write_clip(tmp_path, "no-video", video=False)
    bad = write_clip(tmp_path, "renamed", video=False)
    (bad / "labels.json").write_text((bad / "labels.json").read_text().replace("renamed", "x"))
    result = runner.invoke(
        app, ["eval-devset", str(tmp_path), "--clip", "street-a", "--clip", "nope"]
    )
    assert result.exit_code == 2
    assert "street-a" in result.output
    assert "--clip nope: no such clip" in result.output
    result = runner.invoke(app, ["eval-devset", str(tmp_path)])
    assert result.exit_code == 2
    assert "no-video: " in result.output and "no such file" in result.output
    assert "clip: 'x' is not the folder's name" in result.output
    assert "1 clips with final labels, 120 frames" in result.output


def test_eval_devset_needs_a_folder_with_clips(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval-devset", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such directory" in result.output
    result = runner.invoke(app, ["eval-devset", str(tmp_path)])
    assert result.exit_code == 2 and "no clip folders" in result.output


def test_the_repository_dev_set_is_valid_and_every_clip_has_a_source() -> None:
    """Every committed label file and scene loads (the videos are not in the repository)."""
    root = Path(__file__).resolve().parents[3] / "devset"
    clips = [load_clip(folder) for folder in clip_dirs(root)]
    sources = yaml.safe_load((root / "sources.yaml").read_text())["clips"]
    assert clips and {clip.name for clip in clips} == set(sources)
    assert all(clip.scene.fps == pytest.approx(clip.labels.fps) for clip in clips)
