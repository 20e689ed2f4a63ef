"""``replay --trace`` and ``--annotate``: what the detector saw, one line and one output
frame per frame read."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.detector.drawing import SIGNAL_BGR, VIOLATION_BGR, ZONE_BGR
from services.detector.signal import LightState
from tests.unit.detector.videos import CROSSING_FRAME, FRAMES, runner_images, write_mjpg

runner = CliRunner()
SIGNALS = {"red", "amber", "green", "unknown"}


def replay(tmp_path: Path, scene_file: Path, *extra: str) -> tuple[str, list[dict[str, Any]]]:
    video = write_mjpg(tmp_path / "clip.avi", corrupt_frames=(80,))
    events = tmp_path / "events.jsonl"
    result = runner.invoke(
        app,
        ["replay", str(video), "--scene", str(scene_file), "--events", str(events), *extra],
    )
    assert result.exit_code == 0, result.output
    return result.output, [json.loads(line) for line in events.read_text().splitlines()]


def test_trace_has_one_line_per_frame_read_as_the_contract_says(
    tmp_path: Path, scene_file: Path
) -> None:
    output, events = replay(tmp_path, scene_file, "--trace", str(tmp_path / "t.jsonl"))
    trace = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]

    assert f"frames read: {FRAMES}" in output and f"trace: {FRAMES} lines" in output
    assert [line["frame"] for line in trace] == list(range(FRAMES))
    assert all(b["ts_ms"] > a["ts_ms"] for a, b in itertools.pairwise(trace))
    for line in trace:
        assert {"frame", "ts_ms", "signal", "tracks", "events"} <= line.keys()
        assert line["signal"] in SIGNALS
        for track in line["tracks"]:
            assert isinstance(track["track_id"], int)
            assert isinstance(track["stationary"], bool)
            assert len(track["bbox_xywh"]) == 4
            assert all(isinstance(v, int) for v in track["bbox_xywh"])
    assert trace[80]["dropped"] == "decode" and trace[80]["events"] == []

    # The signal the detector holds: green before the amber, red soon after red comes on.
    assert {line["signal"] for line in trace[5:18]} == {"green"}
    assert {line["signal"] for line in trace[45:120]} == {"red"}

    # Each event is listed once, at the frame that raised it (judged at or after the crossing).
    [event] = events
    raised = [line for line in trace if line["events"]]
    assert [line["events"] for line in raised] == [[event["violation_id"]]]
    assert raised[0]["frame"] >= event["frame"] == CROSSING_FRAME
    [runner_track] = [
        t for t in trace[CROSSING_FRAME]["tracks"] if t["track_id"] == event["track_id"]
    ]
    assert runner_track["bbox_xywh"] == event["bbox_xywh"]


def _share(image: np.ndarray, box: tuple[int, int, int, int], bgr: tuple[int, ...]) -> float:
    """The share of pixels in the box within 60 of colour ``bgr`` in every channel."""
    x, y, w, h = box
    patch = image[y : y + h, x : x + w].astype(np.int16)
    near = np.all(np.abs(patch - np.array(bgr, np.int16)) < 60, axis=2)
    return float(near.mean())


def _read_all(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            return images
        images.append(image)


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_annotated_video_shows_what_the_detector_saw(
    tmp_path: Path, scene_file: Path, suffix: str
) -> None:
    out = tmp_path / f"annotated{suffix}"
    trace_path = tmp_path / "t.jsonl"
    output, events = replay(
        tmp_path, scene_file, "--annotate", str(out), "--trace", str(trace_path)
    )
    assert f"annotated: {FRAMES} frames" in output
    images = _read_all(out)
    assert len(images) == FRAMES, "one output frame per frame read, the dropped one too"
    assert {image.shape for image in images} == {(360, 640, 3)}
    source = list(runner_images())
    trace = [json.loads(line) for line in trace_path.read_text().splitlines()]

    # The zone outline (its top edge at y=150, x 480-600) and the stop line in the colour
    # of the signal held: green at frame 10, red at frame 50.
    zone_edge = (500, 149, 80, 3)
    assert _share(images[10], zone_edge, ZONE_BGR) > 0.3
    assert _share(source[10], zone_edge, ZONE_BGR) == 0
    line_strip = (210, 198, 60, 5)
    assert _share(images[10], line_strip, SIGNAL_BGR[LightState.GREEN]) > 0.2
    assert _share(images[50], line_strip, SIGNAL_BGR[LightState.RED]) > 0.2

    # The runner's box: drawn around the tracked car, in red once it has offended.
    [event] = events
    raised_at = next(line["frame"] for line in trace if line["events"])

    def edge(frame: int) -> tuple[int, int, int, int]:
        track = next(t for t in trace[frame]["tracks"] if t["track_id"] == event["track_id"])
        x, y, _, h = track["bbox_xywh"]
        return (x - 2, y + h // 4, 4, h // 2)  # the box's left side

    before, after = raised_at - 5, raised_at + 3
    assert _share(images[after], edge(after), VIOLATION_BGR) > 0.3
    assert _share(images[before], edge(before), VIOLATION_BGR) < 0.05
    # The dropped frame repeats the last good image, stamped: it differs from its neighbour.
    assert not np.array_equal(images[80], images[79])


@pytest.mark.parametrize(
    ("name", "message"),
    [("out.mkv", "must end in .avi or .mp4"), ("out.txt", "must end in .avi or .mp4")],
)
def test_annotate_rejects_an_unsupported_file(
    tmp_path: Path, scene_file: Path, name: str, message: str
) -> None:
    video = write_mjpg(tmp_path / "clip.avi", count=5)
    args = ["replay", str(video), "--scene", str(scene_file), "--events", str(tmp_path / "e")]
    result = runner.invoke(app, [*args, "--annotate", str(tmp_path / name)])
    assert result.exit_code == 2
    assert message in result.output


def test_trace_into_a_directory_is_a_one_line_error(tmp_path: Path, scene_file: Path) -> None:
    video = write_mjpg(tmp_path / "clip.avi", count=5)
    args = ["replay", str(video), "--scene", str(scene_file), "--events", str(tmp_path / "e")]
    result = runner.invoke(app, [*args, "--trace", str(tmp_path)])
    assert result.exit_code == 2
    assert f"--trace {tmp_path}: Is a directory" in result.output.replace("\n", "")
