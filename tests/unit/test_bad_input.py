"""Every bad input of the probe (issue 12) gets one line naming the file, key or option, and
exit code 2: no traceback, no exit 1, no half-done run."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.config.loader import MAX_CONFIG_BYTES
from tests.unit.detector.synth import scene
from tests.unit.detector.videos import write_mjpg

runner = CliRunner()
# Nothing listens here: a Kafka that does not answer.
DEAD_KAFKA = "kafka://127.0.0.1:9"


@dataclass(frozen=True)
class Case:
    """``args(tmp_path)`` are the command line; ``expect`` must be in its one error line."""

    args: Callable[[Path], list[str]]
    expect: Callable[[Path], str]


# One clip and scene for every replay case (written by the ``clip`` fixture).
CLIP: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def clip(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("clip")
    CLIP["video"], CLIP["scene"] = str(folder / "clip.avi"), str(folder / "scene.yaml")
    write_mjpg(Path(CLIP["video"]))
    Path(CLIP["scene"]).write_text(json.dumps(scene().model_dump(mode="json")))


def replay(tmp: Path, *extra: str, events: str | None = None) -> list[str]:
    video, scene_path = CLIP["video"], CLIP["scene"]
    return [
        "replay",
        video,
        "--scene",
        scene_path,
        "--events",
        events or str(tmp / "e.jsonl"),
        *extra,
    ]


def a_file(tmp: Path) -> Path:
    path = tmp / "plain-file"
    path.write_text("x")
    return path


def config(tmp: Path, text: str | bytes, name: str = "scene.yaml") -> list[str]:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return ["config", "check", str(path)]


SCENE_HEAD = "camera_id: cam-1\ncity: wuzhen\nfps: 10\n"


def zone(polygon: str) -> str:
    return (
        SCENE_HEAD + f"no_parking_zones:\n  - name: z\n    polygon: {polygon}\n    max_dwell_s: 5\n"
    )


def stop_line(points: str) -> str:
    return (
        SCENE_HEAD
        + "traffic_light: {roi: [10, 10, 20, 60]}\n"
        + f"stop_line: {{points: {points}, travel_direction: [0, -1]}}\n"
    )


CASES = {
    "events-is-a-directory": Case(
        lambda t: replay(t, events=str(t)), lambda t: f"--events {t}: Is a directory"
    ),
    "events-under-a-file": Case(
        lambda t: replay(t, events=str(a_file(t) / "e.jsonl")),
        lambda t: (
            f"--events {t / 'plain-file' / 'e.jsonl'}: {t / 'plain-file'} is a file, not a "
            "directory"
        ),
    ),
    "events-on-a-full-disk": Case(
        lambda t: replay(t, events="/dev/full"),
        lambda t: "--events /dev/full: No space left on device",
    ),
    "snapshots-under-a-file": Case(
        lambda t: replay(t, "--snapshots", str(a_file(t) / "ev")),
        lambda t: (
            f"--snapshots {t / 'plain-file' / 'ev'}: {t / 'plain-file'} is a file, not a directory"
        ),
    ),
    "bus-not-kafka": Case(
        lambda t: replay(t, "--bus", "http://x"),
        lambda t: "--bus http://x: bus URL 'http://x': scheme must be kafka:// or memory://",
    ),
    "bus-that-does-not-answer": Case(
        lambda t: replay(t, "--bus", DEAD_KAFKA),
        lambda t: f"--bus {DEAD_KAFKA}: cannot reach Kafka at 127.0.0.1:9",
    ),
    "replay-window-for-a-file": Case(
        lambda t: replay(t, "--since-ts-ms", "1"),
        lambda t: "--since-ts-ms and --until-ts-ms pick frames from Kafka, not from a file",
    ),
    "replay-from-kafka-without-a-window": Case(
        lambda t: ["replay", DEAD_KAFKA, "--scene", CLIP["scene"], "--events", str(t / "e")],
        lambda t: f"{DEAD_KAFKA}: give --since-ts-ms and --until-ts-ms",
    ),
    "replay-from-kafka-that-does-not-answer": Case(
        lambda t: [
            "replay",
            DEAD_KAFKA,
            "--scene",
            CLIP["scene"],
            "--events",
            str(t / "e"),
            "--since-ts-ms",
            "1",
            "--until-ts-ms",
            "2",
        ],
        lambda t: f"{DEAD_KAFKA}: cannot reach Kafka at 127.0.0.1:9",
    ),
    "run-bus-not-kafka": Case(
        lambda t: ["run", "--bus", "http://x", "--evidence-dir", str(t)],
        lambda t: "bus URL 'http://x': scheme must be kafka:// or memory://",
    ),
    "run-bus-that-does-not-answer": Case(
        lambda t: ["run", "--bus", DEAD_KAFKA, "--evidence-dir", str(t)],
        lambda t: "cannot reach Kafka at 127.0.0.1:9",
    ),
    "detect-source-that-does-not-answer": Case(
        lambda t: ["detect", "--source", DEAD_KAFKA, "--bus", "memory://", "--metrics-port", "0"],
        lambda t: f"--source {DEAD_KAFKA}: cannot reach Kafka at 127.0.0.1:9",
    ),
    "simulate-to-that-does-not-answer": Case(
        lambda t: ["simulate", "--camera", "wuzhen-cam-01", "--seconds", "1", "--to", DEAD_KAFKA],
        lambda t: f"--to {DEAD_KAFKA}: cannot reach Kafka at 127.0.0.1:9",
    ),
    "dispatch-bus-that-does-not-answer": Case(
        lambda t: ["dispatch", "--bus", DEAD_KAFKA, "--queue", "redis://127.0.0.1:9"],
        lambda t: "cannot reach Kafka at 127.0.0.1:9",
    ),
    "config-binary": Case(
        lambda t: config(t, bytes(range(256)) * 4),
        lambda t: f"{t / 'scene.yaml'}: not UTF-8 text (byte 0x80 at offset 128)",
    ),
    "config-not-utf8": Case(
        lambda t: config(t, "city: Hangzhou \u00e9\n".encode("latin-1")),
        lambda t: f"{t / 'scene.yaml'}: not UTF-8 text (byte 0xe9 at offset 15)",
    ),
    "config-markup-in-path-and-key": Case(
        # "[/]" in a path: a folder "a[" and a file "]b.yaml".
        lambda t: config(t, SCENE_HEAD + '"[red]x[/red]": 1\n', name="a[/]b.yaml"),
        lambda t: f"{t / 'a[/]b.yaml'}: [red]x[/red]: Extra inputs are not permitted",
    ),
    "config-duplicate-key": Case(
        lambda t: config(t, SCENE_HEAD + "fps: 25\n"),
        lambda t: f"{t / 'scene.yaml'}: line 4, column 1: invalid YAML: duplicate key 'fps'",
    ),
    "config-nan-coordinate": Case(
        lambda t: config(t, stop_line("[[.nan, 300], [800, 300]]")),
        lambda t: f"{t / 'scene.yaml'}: stop_line.points[0][0]: Input should be a finite number",
    ),
    "config-huge-coordinate": Case(
        lambda t: config(t, stop_line("[[1e308, 300], [800, 300]]")),
        lambda t: (
            f"{t / 'scene.yaml'}: stop_line.points[0][0]: Input should be less than or "
            "equal to 100000"
        ),
    ),
    "config-zero-area-zone": Case(
        lambda t: config(t, zone("[[0, 0], [10, 10], [20, 20]]")),
        lambda t: f"{t / 'scene.yaml'}: no_parking_zones[0].polygon: encloses no area",
    ),
    "config-self-intersecting-zone": Case(
        lambda t: config(t, zone("[[0, 0], [40, 40], [40, 0], [0, 40]]")),
        lambda t: (
            f"{t / 'scene.yaml'}: no_parking_zones[0].polygon: crosses itself: edges 0 and 2 meet"
        ),
    ),
    "config-too-large": Case(
        lambda t: config(t, "# " + "x" * MAX_CONFIG_BYTES + "\n"),
        lambda t: f"{t / 'scene.yaml'}: larger than {MAX_CONFIG_BYTES:,} bytes",
    ),
}


def one_error_line(args: list[str]) -> str:
    """The command's one error line, after checking it exits 2 with no traceback."""
    result = runner.invoke(app, args)
    errors = [line for line in result.output.splitlines() if line.startswith("error ")]
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_gets_one_line_naming_it_and_exit_2(case: Case, tmp_path: Path) -> None:
    assert case.expect(tmp_path) in one_error_line(case.args(tmp_path))


def test_a_port_that_accepts_but_never_speaks_kafka_fails_in_seconds() -> None:
    """kafka-python would wait 30 s for a bootstrap answer; ours waits 10."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        # The listen backlog accepts the connections; nobody ever reads or answers.
        line = one_error_line(
            [
                "simulate",
                "--camera",
                "wuzhen-cam-01",
                "--seconds",
                "1",
                "--to",
                f"kafka://127.0.0.1:{port}",
            ]
        )
    assert f"cannot reach Kafka at 127.0.0.1:{port}: no answer within 10 s" in line


def test_markup_in_an_error_is_printed_literally(tmp_path: Path) -> None:
    result = runner.invoke(app, config(tmp_path, SCENE_HEAD + '"[red]x[/red]": 1\n'))
    assert re.search(r"\[red\]x\[/red\]: Extra inputs are not permitted$", result.output, re.M)
