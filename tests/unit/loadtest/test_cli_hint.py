"""The load test's closing hint: how to replay what the detectors saw of a lost violation."""

from __future__ import annotations

import pytest

from services.loadtest.cli import replay_hint
from services.stack.config import DEFAULT_STACK_PATH, load_stack_config


def test_a_lost_violation_comes_with_the_replay_command_for_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = load_stack_config(DEFAULT_STACK_PATH)
    lost = {"camera_id": "wuzhen-cam-04", "type": "illegal_parking", "ts_ms": 100_000}
    replay_hint({"lost": [lost], "start_ms": 40_000, "kill": None}, config)
    said = " ".join(capsys.readouterr().out.split())
    # From the camera's first frame, where its pipeline started, to 10 s after the violation.
    assert f"citybrain replay kafka://127.0.0.1:{config.ports.kafka} --scene " in said
    assert "wuzhen-cam-04.yaml --since-ts-ms 40000 --until-ts-ms 110000" in said
    assert "moved" not in said
    assert said.endswith("--trace /tmp/lost-trace.jsonl"), "the command is copied whole"
    replay_hint(
        {"lost": [lost], "start_ms": 40_000, "kill": {"moved": [lost["camera_id"]]}}, config
    )
    assert "tracker_epoch_ms" in capsys.readouterr().out


def test_nothing_lost_needs_no_hint(capsys: pytest.CaptureFixture[str]) -> None:
    replay_hint({"lost": [], "start_ms": 0}, load_stack_config(DEFAULT_STACK_PATH))
    assert capsys.readouterr().out == ""
