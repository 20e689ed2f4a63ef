"""``citybrain replay kafka://``: a camera's frames read back from the ``frames`` topic, as a
stack's detectors were fed them, give what the pipeline gives on the same frames."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from services.common.bus.kafka import KafkaBus
from services.common.frames import FRAMES_TOPIC, Frame
from services.detector.pipeline import DetectorPipeline
from simulators.feed import simulate_camera

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 20


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", "replay", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_cameras_frames_in_kafka_replay_to_the_pipelines_events(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    camera_id = f"it-replay-{unique_name[-8:]}"  # ids are at most 64 characters
    camera = simulate_camera("hangzhou-cam-01", seconds=SECONDS, seed=0, resolution_wh=(640, 360))
    scene = camera.scene.model_copy(update={"camera_id": camera_id})
    scene_path = tmp_path / "scene.yaml"
    scene_path.write_text(yaml.safe_dump(scene.model_dump(mode="json", exclude_none=True)))
    # Captured over the last SECONDS, as a live camera's frames would have been; sent now.
    start_ms = int(time.time() * 1000) - (SECONDS + 1) * 1000
    frames = [
        Frame(
            camera_id=camera_id,
            index=frame.index,
            ts_ms=start_ms + frame.index * round(1000 / scene.fps),
            jpeg=frame.jpeg,
        )
        for frame in camera.jpeg_frames()
    ]
    bus = KafkaBus(bootstrap_servers=kafka_bootstrap)
    bus.ensure_topics([FRAMES_TOPIC])
    for frame in frames:
        assert frame.jpeg is not None
        bus.publish(FRAMES_TOPIC.name, frame.jpeg, key=camera_id.encode(), headers=frame.headers())
    bus.flush()
    bus.close()
    pipeline = DetectorPipeline(scene)
    expected = [e.violation_id for f in frames for e in pipeline.process(f)]
    assert expected, "the clip should hold a violation"

    events, trace = tmp_path / "events.jsonl", tmp_path / "trace.jsonl"
    done = _replay(
        f"kafka://{kafka_bootstrap}", "--scene", str(scene_path),
        "--since-ts-ms", str(frames[0].ts_ms), "--until-ts-ms", str(frames[-1].ts_ms),
        "--events", str(events), "--trace", str(trace),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = [json.loads(line)["violation_id"] for line in events.read_text().splitlines()]
    assert found == expected
    assert len(trace.read_text().splitlines()) == len(frames)

    # A window the camera sent nothing in is an error that says so.
    before = _replay(
        f"kafka://{kafka_bootstrap}", "--scene", str(scene_path),
        "--since-ts-ms", str(start_ms - 60_000), "--until-ts-ms", str(start_ms - 30_000),
        "--events", str(tmp_path / "none.jsonl"),
    )  # fmt: skip
    assert before.returncode == 2
    assert f"no frames of {camera_id}" in before.stderr
