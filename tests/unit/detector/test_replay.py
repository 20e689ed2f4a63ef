"""Replay of recorded video: MJPG fast path, corrupt frames, clear errors, real footage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from tests.unit.detector.videos import write_mjpg

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
runner = CliRunner()


def replay(video: Path, scene_path: Path, out: Path, *extra: str) -> tuple[int, str, list[dict]]:
    result = runner.invoke(
        app, ["replay", str(video), "--scene", str(scene_path), "--events", str(out), *extra]
    )
    events = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return result.exit_code, result.output, events


def test_replay_finds_the_runner_and_is_repeatable(tmp_path: Path, scene_file: Path) -> None:
    video = tmp_path / "clip.avi"
    write_mjpg(video)
    code, output, events = replay(
        video, scene_file, tmp_path / "a.jsonl", "--snapshots", str(tmp_path / "ev")
    )
    assert code == 0, output
    assert "frames read: 120  processed: 120  dropped: 0" in output
    rate = re.search(r"^fps: (\d+\.\d) \((\d+\.\d\d) s\)$", output, re.MULTILINE)
    assert rate, output
    fps, seconds = float(rate[1]), float(rate[2])
    # The rate is the frames read over the time it took: the same, up to the printed rounding.
    assert fps > 0
    assert 120 / fps == pytest.approx(seconds, abs=0.006)
    assert "events: 1 {'red_light': 1} -> " in output
    assert [(e["type"], e["frame"]) for e in events] == [("red_light", 56)]
    crop = Path(events[0]["snapshot"])
    assert crop.is_file() and crop.with_name(crop.stem + "-scene.jpg").is_file()
    _, _, again = replay(video, scene_file, tmp_path / "b.jsonl")
    assert [e["violation_id"] for e in again] == [e["violation_id"] for e in events]


def test_corrupt_frame_is_skipped_and_counted(tmp_path: Path, scene_file: Path) -> None:
    video = tmp_path / "broken.avi"
    write_mjpg(video, corrupt_frames=(60,))
    code, output, events = replay(video, scene_file, tmp_path / "out.jsonl")
    assert code == 0, output
    assert "frames read: 120" in output and "dropped: 1" in output
    assert [e["frame"] for e in events] == [56]


@pytest.mark.parametrize(
    ("video_bytes", "scene_text", "message"),
    [
        (None, None, "no such file"),
        (b"not a video at all", None, "not a video"),
        (b"", "camera_id: BAD ID\ncity: x\nfps: 10\n", "camera_id"),
    ],
)
def test_clear_errors_exit_2(
    tmp_path: Path,
    scene_file: Path,
    video_bytes: bytes | None,
    scene_text: str | None,
    message: str,
) -> None:
    video = tmp_path / "in.avi"
    if video_bytes is not None:
        video.write_bytes(video_bytes)
    if scene_text is not None:
        scene_file.write_text(scene_text)
    code, output, _ = replay(video, scene_file, tmp_path / "out.jsonl")
    assert code == 2
    assert message in output


@pytest.mark.skipif(not VTEST.is_file(), reason="needs apt's opencv-doc (vtest.avi)")
def test_real_footage_replays_end_to_end(tmp_path: Path) -> None:
    code, output, _ = replay(VTEST, Path("tests/data/vtest-scene.yaml"), tmp_path / "v.jsonl")
    assert code == 0, output
    assert "frames read: 795" in output and "dropped: 0" in output
