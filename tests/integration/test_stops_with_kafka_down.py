"""``citybrain dispatch`` and ``citybrain detect --source kafka://`` can always be stopped:
SIGTERM is honoured while the broker is down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import ServiceCtl, metrics_text, sigterm_when_ready
from tests.ports import free_port

# A stop is honoured within a few seconds, even with the broker away (the consumer thread
# is given 5 s, a commit or a close 5 s).
STOP_S = 15


def _stops_with_kafka_down(
    args: list[str], log_path: Path, kafka_ctl: ServiceCtl, *, ready: Callable[[], bool]
) -> None:
    """Once ``ready()``, stop Kafka and SIGTERM ``citybrain ARGS``: it exits 0 in STOP_S."""
    returncode = sigterm_when_ready(
        args,
        log_path,
        ready=ready,
        waiting_for="holding its partitions",
        stop_s=STOP_S,
        then=kafka_ctl.stop,
    )
    assert returncode == 0, log_path.read_text()[-3000:]


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
