"""Real video input: the stream's own timestamps, real drops only, truncation, bad first
frames, and scenes that do not fit the video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.detector.container import find_truncation
from services.detector.sources import DroppedFrame, VideoFileSource
from tests.unit.detector.synth import scene
from tests.unit.detector.videos import (
    CROSSING_FRAME,
    FRAMES,
    ffmpeg,
    truncate,
    write_edit_listed_mov,
    write_h264,
    write_mjpg,
    write_vfr_mkv,
)

T0_MS = 1_700_000_000_000
runner = CliRunner()


def replay(
    tmp_path: Path, video: Path, scene_path: Path, *extra: str
) -> tuple[int, str, list[dict[str, Any]], list[dict[str, Any]]]:
    """Exit code, output, events and trace lines of a replay starting at T0_MS."""
    events, trace = tmp_path / "events.jsonl", tmp_path / "trace.jsonl"
    args = ["replay", str(video), "--scene", str(scene_path), "--events", str(events)]
    args += ["--trace", str(trace), "--start-ts-ms", str(T0_MS), *extra]
    result = runner.invoke(app, args)

    def lines(path: Path) -> list[dict[str, Any]]:
        text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    return result.exit_code, result.output, lines(events), lines(trace)


def test_variable_frame_rate_mkv_is_timed_by_its_own_timestamps(
    tmp_path: Path, scene_file: Path
) -> None:
    pts_ms = write_vfr_mkv(tmp_path / "vfr.mkv")
    code, output, events, trace = replay(tmp_path, tmp_path / "vfr.mkv", scene_file)
    assert code == 0, output
    assert [line["ts_ms"] - T0_MS for line in trace] == pts_ms
    assert "dropped: 0" in output
    [event] = events
    assert event["frame"] == CROSSING_FRAME
    assert event["ts_ms"] == T0_MS + pts_ms[CROSSING_FRAME]


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_h264_containers_replay_with_stream_times(
    tmp_path: Path, scene_file: Path, suffix: str
) -> None:
    video = write_h264(tmp_path / f"clip{suffix}")
    code, output, events, trace = replay(tmp_path, video, scene_file)
    assert code == 0, output
    assert f"frames read: {FRAMES}" in output and "dropped: 0" in output
    assert [line["ts_ms"] - T0_MS for line in trace] == [i * 100 for i in range(FRAMES)]
    assert [(e["type"], e["frame"]) for e in events] == [("red_light", CROSSING_FRAME)]


def test_container_that_lists_more_frames_than_it_holds_reports_no_phantom_drops(
    tmp_path: Path, scene_file: Path
) -> None:
    whole = write_h264(tmp_path / "whole.mov")
    write_edit_listed_mov(tmp_path / "trimmed.mov", whole)
    source = VideoFileSource(tmp_path / "trimmed.mov", camera_id="synth-cam", fps=10)
    items = list(source)
    assert not any(isinstance(item, DroppedFrame) for item in items)
    assert source.frame_count > len(items), "the MOV must list the frames its edit hides"

    code, output, _, trace = replay(tmp_path, tmp_path / "trimmed.mov", scene_file)
    assert code == 0, output
    assert "dropped: 0" in output
    assert f"frames read: {len(items)}" in output
    assert f"the container lists {source.frame_count} frames, its stream holds {len(items)}" in (
        output.replace("\n", " ")
    )
    assert len(trace) == len(items)
    # Times start at the trim, from the stream: 0, 100, ... ms (not shifted by hidden frames).
    assert [line["ts_ms"] - T0_MS for line in trace[:3]] == [0, 100, 200]


def test_truncated_avi_is_reported_as_truncated_not_as_drops(
    tmp_path: Path, scene_file: Path
) -> None:
    video = truncate(write_mjpg(tmp_path / "cut.avi"), keep=0.6)
    code, output, _, trace = replay(tmp_path, video, scene_file)
    assert code == 0, output
    text = output.replace("\n", " ")
    assert "is truncated: it ends at byte" in text
    assert "dropped: 0" in output
    read = int(text.split("frames read: ")[1].split()[0])
    assert 0.5 * FRAMES < read < 0.65 * FRAMES
    assert len(trace) == read


def test_corrupt_first_frame_does_not_reject_the_file(tmp_path: Path, scene_file: Path) -> None:
    video = write_mjpg(tmp_path / "bad-first.avi", corrupt_frames=(0,))
    code, output, events, trace = replay(tmp_path, video, scene_file)
    assert code == 0, output
    assert f"frames read: {FRAMES}" in output and "dropped: 1 {'decode': 1}" in output
    assert trace[0]["dropped"] == "decode" and trace[0]["frame"] == 0
    assert [line["ts_ms"] - T0_MS for line in trace[:3]] == [0, 100, 200]
    assert [e["frame"] for e in events] == [CROSSING_FRAME]


def test_corrupt_frames_in_the_middle_are_real_drops(tmp_path: Path, scene_file: Path) -> None:
    video = write_mjpg(tmp_path / "holes.avi", corrupt_frames=(20, 21, 90))
    code, output, _, trace = replay(tmp_path, video, scene_file)
    assert code == 0, output
    assert f"frames read: {FRAMES}" in output and "dropped: 3" in output
    assert [line["frame"] for line in trace if "dropped" in line] == [20, 21, 90]
    # A lost frame is placed where it would have been: times keep to the 100 ms grid.
    assert [line["ts_ms"] - T0_MS for line in trace] == [i * 100 for i in range(FRAMES)]


def test_a_file_with_no_good_frame_is_rejected(tmp_path: Path, scene_file: Path) -> None:
    video = write_mjpg(tmp_path / "all-bad.avi", corrupt_frames=tuple(range(FRAMES)))
    code, output, _, _ = replay(tmp_path, video, scene_file)
    assert code == 2
    assert "cannot decode any of its first" in output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"resolution_wh": None, "traffic_light": {"roi": [630, 20, 20, 60]}},
            "traffic_light.roi: [630, 20, 20, 60] lies outside the 640x360 frame",
        ),
        (
            {
                "resolution_wh": None,
                "no_parking_zones": [
                    {"name": "z", "polygon": [[500, 300], [700, 300], [600, 350]], "max_dwell_s": 5}
                ],
            },
            "no_parking_zones[0].polygon: [700.0, 300.0] lies outside the 640x360 frame",
        ),
        (
            {
                "resolution_wh": None,
                "stop_line": {"points": [[200, 400], [440, 400]], "travel_direction": [0, -1]},
            },
            "stop_line.points: [200.0, 400.0] lies outside the 640x360 frame",
        ),
        (
            {"resolution_wh": [640, 480]},
            "resolution_wh: 640x480 is not the shape of the 640x360 video",
        ),
    ],
)
def test_scene_that_does_not_fit_the_video_exits_2(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    data = scene().model_dump(mode="json")
    data.update(overrides)
    scene_path = tmp_path / "scene.yaml"
    scene_path.write_text(json.dumps(data))
    video = write_mjpg(tmp_path / "clip.avi")
    code, output, events, _ = replay(tmp_path, video, scene_path)
    assert code == 2
    assert message in output.replace("\n", "")
    assert events == []


def test_scene_drawn_at_another_resolution_of_the_same_shape_fits(
    tmp_path: Path, scene_file: Path
) -> None:
    data = scene().model_dump(mode="json")
    scale = 2
    data["resolution_wh"] = [640 * scale, 360 * scale]
    data["traffic_light"]["roi"] = [v * scale for v in data["traffic_light"]["roi"]]
    data["stop_line"]["points"] = [[x * scale, y * scale] for x, y in data["stop_line"]["points"]]
    for zone in data["no_parking_zones"]:
        zone["polygon"] = [[x * scale, y * scale] for x, y in zone["polygon"]]
    scene_file.write_text(json.dumps(data))
    code, output, events, _ = replay(tmp_path, write_mjpg(tmp_path / "clip.avi"), scene_file)
    assert code == 0, output
    assert [e["frame"] for e in events] == [CROSSING_FRAME]


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".mov", ".mkv"])
def test_find_truncation(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".avi":
        write_mjpg(whole, count=20)
    else:
        # faststart: the index first, as cameras that stream MP4 write it, so that the cut
        # file still opens.
        faststart = ["-movflags", "+faststart"] if suffix != ".mkv" else []
        write_h264(whole, *faststart, count=20)
    assert find_truncation(whole) is None
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes())
    truncation = find_truncation(truncate(cut, keep=0.7))
    assert truncation is not None
    assert truncation.size_bytes == cut.stat().st_size
    assert truncation.declared_bytes >= whole.stat().st_size


def test_unknown_sized_matroska_says_nothing(tmp_path: Path) -> None:
    # A live recording piped out never seeks back to write its segment's size.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x36:rate=5:duration=1", "-c:v", "mjpeg",
           "-f", "matroska", "-live", "1", str(tmp_path / "live.mkv"))  # fmt: skip
    assert find_truncation(truncate(tmp_path / "live.mkv", keep=0.5)) is None


def test_detect_checks_a_video_source_against_its_scene_too(tmp_path: Path) -> None:
    data = scene().model_dump(mode="json")
    data.update({"resolution_wh": None, "traffic_light": {"roi": [630, 20, 20, 60]}})
    scene_path = tmp_path / "scene.yaml"
    scene_path.write_text(json.dumps(data))
    video = write_mjpg(tmp_path / "clip.avi", count=5)
    result = runner.invoke(
        app,
        [
            "detect",
            "--source",
            f"video:{video}",
            "--scene",
            str(scene_path),
            "--bus",
            "memory://",
            "--metrics-port",
            "0",
            "--snapshots",
            str(tmp_path / "ev"),
        ],
    )
    assert result.exit_code == 2
    assert "traffic_light.roi: [630, 20, 20, 60] lies outside" in result.output.replace("\n", "")
