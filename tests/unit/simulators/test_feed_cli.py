"""Frames, variants, faults and the sinks: video files, the bus, and the CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from services.cli import app
from services.common.bus.memory import InMemoryBus
from services.common.config.catalogue import catalogue_path
from services.common.config.loader import ConfigError, load_model
from services.common.config.scene import SceneConfig
from services.common.frames import FRAMES_TOPIC, frame_from_message
from simulators.feed import VARIANTS, publish_frames, simulate_camera, write_recording
from simulators.truth import load_truth

SMALL = (320, 180)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_shows_the_signal_state_in_the_roi(variant: str) -> None:
    camera = simulate_camera("wuzhen-cam-01", seconds=30, variant=variant, resolution_wh=SMALL)
    assert camera.scene.traffic_light is not None
    x, y, w, h = camera.scene.traffic_light.roi
    for index in (0, 150, 260):  # green, amber and red in wuzhen-cam-01's cycle
        grey = cv2.cvtColor(camera.render(index), cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w]
        thirds = [grey[k * h // 3 : (k + 1) * h // 3].max() for k in range(3)]
        lit = ("red", "amber", "green")[int(np.argmax(thirds))]
        assert lit == camera.light_state(index), (variant, index, thirds)


def test_night_is_darker_than_day_and_frames_have_the_requested_size() -> None:
    day, night = (
        simulate_camera("hangzhou-cam-03", seconds=1, variant=v, resolution_wh=(640, 360))
        for v in ("day", "night")
    )
    assert day.render(0).shape == (360, 640, 3)
    assert night.render(0).mean() < day.render(0).mean() / 2


def test_truth_boxes_scale_with_the_resolution() -> None:
    native = simulate_camera("wuzhen-cam-02", seconds=20)
    small = simulate_camera("wuzhen-cam-02", seconds=20, resolution_wh=(640, 360))
    for a, b in zip(native.vehicle_boxes(100), small.vehicle_boxes(100), strict=True):
        assert all(abs(p / 2 - q) <= 1 for p, q in zip(a.bbox_xywh, b.bbox_xywh, strict=True))
    assert small.scene.resolution_wh == (640, 360)


def test_faults_drop_and_corrupt_frames_and_say_so() -> None:
    camera = simulate_camera(
        "hangzhou-cam-04", seconds=4, resolution_wh=SMALL, faults=True, fault_rate=0.3
    )
    dropped = {f.frame for f in camera.frame_truth if f.dropped}
    corrupt = {f.frame for f in camera.frame_truth if f.corrupt}
    assert dropped and corrupt and not dropped & corrupt
    jpegs = list(camera.jpeg_frames())
    assert [f.index for f in jpegs] == [i for i in range(camera.n_frames) if i not in dropped]
    for frame in jpegs:
        decoded = cv2.imdecode(np.frombuffer(frame.jpeg or b"", np.uint8), cv2.IMREAD_COLOR)
        assert (decoded is None) == (frame.index in corrupt)
    assert [f.index for f in camera.frames()] == [f.index for f in jpegs]


def test_frame_timestamps_follow_the_fps() -> None:
    camera = simulate_camera("wuzhen-cam-03", seconds=1, start_ts_ms=1_000, resolution_wh=SMALL)
    assert [f.ts_ms for f in camera.jpeg_frames()] == [1_000 + 100 * i for i in range(10)]


def test_recording_reopens_with_the_right_frame_count_fps_and_truth(tmp_path: Path) -> None:
    camera = simulate_camera("wuzhen-cam-01", seconds=3, resolution_wh=SMALL, faults=True)
    write_recording(camera, tmp_path)
    video = cv2.VideoCapture(str(tmp_path / "video.avi"))
    try:
        assert video.isOpened()
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == camera.n_frames == 30
        assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
        ok, first = video.read()
        assert ok and first.shape == (180, 320, 3)
    finally:
        video.release()
    truth = load_truth(tmp_path / "truth.jsonl")
    assert truth.frames == camera.frame_truth and truth.violations == camera.truth
    assert load_model(SceneConfig, tmp_path / "scene.yaml") == camera.scene


def test_publish_frames_keys_by_camera_and_sets_headers() -> None:
    bus = InMemoryBus()
    cameras = [
        simulate_camera(c, seconds=0.5, resolution_wh=SMALL)
        for c in ("wuzhen-cam-01", "hangzhou-cam-03")
    ]
    assert publish_frames(bus, cameras, realtime=False) == 10
    consumer = bus.subscribe([FRAMES_TOPIC.name], group_id="t")
    messages = consumer.poll(timeout_s=0.1)
    frames = [frame_from_message(m) for m in messages]
    assert {m.key for m in messages} == {b"wuzhen-cam-01", b"hangzhou-cam-03"}
    for camera_id in ("wuzhen-cam-01", "hangzhou-cam-03"):
        assert [f.index for f in frames if f.camera_id == camera_id] == list(range(5))


runner = CliRunner()


def test_cli_writes_every_camera(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["simulate", "--all", "--seconds", "0.3", "--resolution", "160x90", "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    for camera_dir in sorted(tmp_path.iterdir()):
        assert {p.name for p in camera_dir.iterdir()} == {"video.avi", "truth.jsonl", "scene.yaml"}
    assert len(list(tmp_path.iterdir())) == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "nowhere-cam-09"], "unknown camera 'nowhere-cam-09'"),
        (["--camera", "wuzhen-cam-01", "--resolution", "1280by720"], "--resolution"),
        (["--camera", "wuzhen-cam-01", "--variant", "fog"], "--variant"),
        (["--all", "--camera", "wuzhen-cam-01"], "exactly one of --camera"),
        (["--camera", "wuzhen-cam-01", "--to", "ftp://x"], "scheme must be kafka://"),
        (["--camera", "wuzhen-cam-01", "--to", "memory://", "--out", "x"], "exactly one of --out"),
    ],
)
def test_cli_bad_input_exits_2(args: list[str], message: str, tmp_path: Path) -> None:
    out = [] if "--to" in args else ["--out", str(tmp_path / "out")]
    result = runner.invoke(app, ["simulate", "--seconds", "0.2", *args, *out])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_bad_simulator_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "simulator.yaml"
    config.write_text("cameras:\n  wuzhen-cam-01:\n    signal: {green_s: -1}\n    lanes: 3\n")
    result = runner.invoke(
        app,
        ["simulate", "--camera", "wuzhen-cam-01", "--out", str(tmp_path), "--config", str(config)],
    )
    assert result.exit_code == 2
    assert "cameras.wuzhen-cam-01.signal.green_s" in result.output
    assert "cameras.wuzhen-cam-01.lanes" in result.output


def _catalogue_with_scene(tmp_path: Path, scene: dict[str, object]) -> Path:
    catalogue = yaml.safe_load(catalogue_path().read_text())
    camera = catalogue["cities"]["wuzhen"]["cameras"][0]
    camera["scene"] = "scene.yaml"
    (tmp_path / "scene.yaml").write_text(yaml.safe_dump(scene))
    path = tmp_path / "cities.yaml"
    path.write_text(yaml.safe_dump(catalogue))
    return path


_BASE_SCENE = {
    "camera_id": "wuzhen-cam-01",
    "city": "wuzhen",
    "fps": 10,
    "traffic_light": {"roi": [1100, 40, 50, 140]},
    "stop_line": {"points": [[560, 330], [800, 330]], "travel_direction": [0, -1]},
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"stop_line": {"points": [[560, 330], [800, 330]], "travel_direction": [1, -1]}},
            "travel_direction",
        ),
        (
            {"stop_line": {"points": [[560, 330], [800, 340]], "travel_direction": [0, -1]}},
            "perpendicular",
        ),
        (
            {"stop_line": {"points": [[560, 330], [640, 330]], "travel_direction": [0, -1]}},
            "px each",
        ),
        ({"traffic_light": None}, "needs a signal"),
        ({"resolution_wh": [1920, 1080]}, "resolution_wh"),
    ],
)
def test_scenes_the_simulator_cannot_draw_are_config_errors(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    scene = {k: v for k, v in {**_BASE_SCENE, **change}.items() if v is not None}
    catalogue = _catalogue_with_scene(tmp_path, scene)
    with pytest.raises(ConfigError, match=message):
        simulate_camera("wuzhen-cam-01", seconds=1, catalogue_path=catalogue)
    result = runner.invoke(
        app,
        [
            "simulate",
            "--camera",
            "wuzhen-cam-01",
            "--out",
            str(tmp_path),
            "--catalogue",
            str(catalogue),
        ],
    )
    assert result.exit_code == 2 and message in result.output
