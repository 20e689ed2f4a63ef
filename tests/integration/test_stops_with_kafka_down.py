"""``citybrain dispatch`` and ``citybrain detect --source kafka://`` can always be stopped:
SIGTERM is honoured while the broker is down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ServiceCtl, free_port, metrics_text

# Bounds on how long the test waits, not timings it measures.
START_S = 120
# A stop is honoured within a few seconds, even with the broker away (the consumer thread
# is given 5 s).
STOP_S = 15


def _holds_partitions(port: int) -> bool:
    """Whether the dispatcher reports consumer lag: its group gave it partitions."""
    return "citybrain_consumer_lag_messages{" in metrics_text(port)


def test_sigterm_with_the_broker_down_stops_dispatch(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    kafka_ctl: ServiceCtl,
    unique_name: str,
) -> None:
    port = free_port()
    log_path = tmp_path / "dispatch.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "services", "dispatch", f"--bus=kafka://{kafka_bootstrap}",
            f"--queue={redis_url}", f"--topic={unique_name}", f"--group={unique_name}",
            f"--queue-prefix={unique_name}", f"--metrics-port={port}",
        ],
        # A file, not a pipe: a pipe nobody reads fills up with the clients' logs and blocks.
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_S
        while not _holds_partitions(port):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the dispatcher never held its partitions"
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


def _detect_holds_partitions(log: Path) -> bool:
    """Whether the detector's consumer has positioned itself on a ``frames`` partition (its
    lag needs a fetched message to be known, and nothing is sent here)."""
    return "for partition TopicPartition(topic='frames'" in log.read_text()


def test_sigterm_with_the_broker_down_stops_detect(
    tmp_path: Path, kafka_bootstrap: str, kafka_ctl: ServiceCtl, unique_name: str
) -> None:
    log_path = tmp_path / "detect.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "services", "detect", f"--source=kafka://{kafka_bootstrap}",
            "--bus=memory://", f"--group-id={unique_name}", f"--snapshots={tmp_path / 'ev'}",
            f"--metrics-port={free_port()}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_S
        while not _detect_holds_partitions(log_path):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the detector never held its partitions"
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
