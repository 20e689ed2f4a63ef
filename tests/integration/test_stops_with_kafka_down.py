"""``citybrain dispatch`` and ``citybrain detect --source kafka://`` can always be stopped:
SIGTERM is honoured while the broker is down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import ServiceCtl, metrics_text
from tests.ports import free_port

# Bounds on how long the test waits, not timings it measures.
START_S = 120
# A stop is honoured within a few seconds, even with the broker away (the consumer thread
# is given 5 s).
STOP_S = 15


def _stops_with_kafka_down(
    args: list[str], log_path: Path, kafka_ctl: ServiceCtl, *, ready: Callable[[], bool]
) -> None:
    """Start ``citybrain ARGS``; once ``ready()``, stop Kafka, send SIGTERM, and require a
    clean exit within STOP_S."""
    log = log_path.open("w")
    # A file, not a pipe: a pipe nobody reads fills up with the clients' logs and blocks.
    proc = subprocess.Popen(
        [sys.executable, "-m", "services", *args], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + START_S
        while not ready():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"{args[0]} never held its partitions"
            time.sleep(0.5)
        kafka_ctl.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_S} s after SIGTERM with Kafka down")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == 0, log_path.read_text()[-3000:]


def test_sigterm_with_the_broker_down_stops_dispatch(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    kafka_ctl: ServiceCtl,
    unique_name: str,
) -> None:
    port = free_port()
    _stops_with_kafka_down(
        [
            "dispatch", f"--bus=kafka://{kafka_bootstrap}", f"--queue={redis_url}",
            f"--topic={unique_name}", f"--group={unique_name}",
            f"--queue-prefix={unique_name}", f"--metrics-port={port}",
        ],
        tmp_path / "dispatch.log",
        kafka_ctl,
        # The dispatcher reports consumer lag once its group gave it partitions.
        ready=lambda: "citybrain_consumer_lag_messages{" in metrics_text(port),
    )  # fmt: skip


def test_sigterm_with_the_broker_down_stops_detect(
    tmp_path: Path, kafka_bootstrap: str, kafka_ctl: ServiceCtl, unique_name: str
) -> None:
    log_path = tmp_path / "detect.log"
    _stops_with_kafka_down(
        [
            "detect", f"--source=kafka://{kafka_bootstrap}", "--bus=memory://",
            f"--group-id={unique_name}", f"--snapshots={tmp_path / 'ev'}",
            f"--metrics-port={free_port()}",
        ],
        log_path,
        kafka_ctl,
        # The consumer has positioned itself on a `frames` partition (its lag needs a
        # fetched message to be known, and nothing is sent here).
        ready=lambda: "for partition TopicPartition(topic='frames'" in log_path.read_text(),
    )  # fmt: skip
