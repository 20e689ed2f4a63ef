"""``citybrain dispatch`` and ``citybrain detect --source kafka://`` can always be stopped:
SIGTERM is honoured while the broker is down."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import ServiceCtl

# Bounds on how long the test waits, not timings it measures.
START_S = 120
# A stop is honoured within a few seconds, even with the broker away (the dispatcher gives
# its consumer thread 5 s).
STOP_S = 15


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dispatch_holds_partitions(port: int, _log: Path) -> bool:
    """Whether the dispatcher reports consumer lag: its group gave it partitions."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return "citybrain_consumer_lag_messages{" in resp.read().decode()
    except OSError:
        return False


def _detect_holds_partitions(_port: int, log: Path) -> bool:
    """Whether the detector's consumer has positioned itself on a ``frames`` partition (its
    lag needs a fetched message to be known, and nothing is sent here)."""
    return "for partition TopicPartition(topic='frames'" in log.read_text()


def test_sigterm_with_the_broker_down_stops_dispatch_and_detect(
    tmp_path: Path,
    kafka_bootstrap: str,
    redis_url: str,
    kafka_ctl: ServiceCtl,
    unique_name: str,
) -> None:
    bus = f"kafka://{kafka_bootstrap}"
    ports = {"dispatch": _free_port(), "detect": _free_port()}
    commands = {
        "dispatch": [
            "dispatch", f"--bus={bus}", f"--queue={redis_url}", f"--topic={unique_name}",
            f"--group={unique_name}", f"--queue-prefix={unique_name}",
            f"--metrics-port={ports['dispatch']}",
        ],
        "detect": [
            "detect", f"--source={bus}", "--bus=memory://", f"--group-id={unique_name}-det",
            f"--snapshots={tmp_path / 'evidence'}", f"--metrics-port={ports['detect']}",
        ],
    }  # fmt: skip
    logs = {name: (tmp_path / f"{name}.log").open("w") for name in commands}
    procs = {
        # Files, not pipes: a pipe nobody reads fills up with the clients' logs and blocks.
        name: subprocess.Popen(
            [sys.executable, "-m", "services", *args], stdout=logs[name], stderr=subprocess.STDOUT
        )
        for name, args in commands.items()
    }
    try:
        deadline = time.monotonic() + START_S
        ready = {"dispatch": _dispatch_holds_partitions, "detect": _detect_holds_partitions}
        for name, proc in procs.items():
            while not ready[name](ports[name], tmp_path / f"{name}.log"):
                assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
                assert time.monotonic() < deadline, f"{name} never held its partitions"
                time.sleep(0.5)
        kafka_ctl.stop()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        stop_deadline = time.monotonic() + STOP_S
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(0.1, stop_deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} still running {STOP_S} s after SIGTERM with Kafka down")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()
    for name, proc in procs.items():
        assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
