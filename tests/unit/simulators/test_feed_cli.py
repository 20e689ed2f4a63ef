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
from services.common.config.scene import LampLayout, SceneConfig
from services.common.frames import FRAMES_TOPIC, frame_from_message
from simulators.feed import VARIANTS, publish_frames, simulate_camera, write_recording
from simulators.render import LED_VARIANTS, exposure_gain
from simulators.truth import load_truth

SMALL = (320, 180)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_shows_the_signal_state_in_the_roi(variant: str) -> None:
    # A small LED head is 6x15 native pixels: too few at 320x180 to split into thirds.
    resolution_wh = (1280, 720) if variant in LED_VARIANTS else SMALL
    camera = simulate_camera(
        "wuzhen-cam-01", seconds=30, variant=variant, resolution_wh=resolution_wh
    )
    assert camera.scene.traffic_light is not None
    x, y, w, h = camera.scene.traffic_light.roi
    horizontal = camera.scene.traffic_light.layout is LampLayout.HORIZONTAL
    for index in (0, 150, 260):  # green, red and green in wuzhen-cam-01's cycle
        grey = cv2.cvtColor(camera.render(index), cv2.COLOR_BGR2GRAY)[y : y + h, x : x + w]
        if horizontal:
            grey = grey.T
        length = grey.shape[0]
        thirds = [grey[k * length // 3 : (k + 1) * length // 3].max() for k in range(3)]
        lit = ("red", "amber", "green")[int(np.argmax(thirds))]
        assert lit == camera.light_state(index), (variant, index, thirds)


@pytest.mark.parametrize(
    ("variant", "layout"), [("led", "vertical"), ("led_horizontal", "horizontal")]
)
def test_led_variants_hand_out_a_tight_roi_around_a_small_head(variant: str, layout: str) -> None:
    camera = simulate_camera(
        "wuzhen-cam-01", seconds=1, variant=variant, resolution_wh=(1920, 1080)
    )
    assert camera.scene.traffic_light is not None
    _, _, w, h = camera.scene.traffic_light.roi
    assert camera.scene.traffic_light.layout == layout
    assert sorted((w, h)) == [9, 22]


def test_exposure_variant_steps_the_whole_picture_within_a_few_frames() -> None:
    camera = simulate_camera("wuzhen-cam-02", seconds=14, variant="exposure", resolution_wh=SMALL)
    means = [float(camera.render(i).mean()) for i in (55, 59, 63, 70)]
    assert means[1] == pytest.approx(means[0], rel=0.02)
    assert means[2] < means[1] * 0.75
    assert means[3] == pytest.approx(means[2], rel=0.03)
    assert exposure_gain(63, fps=camera.fps) < 1


def test_nightfall_variant_dims_the_picture_bluest_first_to_dusk() -> None:
    camera = simulate_camera("wuzhen-cam-02", seconds=61, variant="nightfall", resolution_wh=SMALL)
    # Per channel (B, G, R): the light loses blue fastest and red slowest, as at dusk.
    first, half, last = (camera.render(i).reshape(-1, 3).mean(axis=0) for i in (0, 300, 600))
    assert np.all(half < first) and np.all(last < half)
    assert last[0] / first[0] == pytest.approx(0.5, abs=0.05)
    assert last[2] / first[2] == pytest.approx(0.78, abs=0.05)


def test_signal_offset_starts_the_clip_anywhere_in_the_cycle() -> None:
    starts = {
        offset: simulate_camera(
            "wuzhen-cam-01", seconds=1, resolution_wh=SMALL, signal_offset_s=offset
        ).light_state(0)
        for offset in (0.0, 13.0, 20.0)
    }
    assert starts == {0.0: "green", 13.0: "amber", 20.0: "red"}


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


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ("cameras: [wuzhen-cam-02]\n", "does not list wuzhen-cam-01"),
        ("cameras: [wuzhen-cam-01, wuzhen-cam-01]\n", "cameras: camera wuzhen-cam-01 is listed"),
        ("camera: [wuzhen-cam-01]\n", "camera: Extra inputs are not permitted"),
    ],
)
def test_live_bad_fleet_order_exits_2(order: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    path.write_text(order)
    result = runner.invoke(
        app,
        ["simulate-live", "--to", "kafka://127.0.0.1:9", "--camera", "wuzhen-cam-01",
         "--seconds", "1", "--fleet-order", str(path)],
    )  # fmt: skip
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
