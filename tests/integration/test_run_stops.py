"""``citybrain run`` can always be stopped: SIGTERM is honoured while Redis is down and a batch
waits to be written, and that batch stays uncommitted, to be delivered again."""

from __future__ import annotations

import re
import time
from pathlib import Path

import kafka
from kafka.structs import TopicPartition

from services.common.bus.kafka import KafkaBus
from services.common.events import VIOLATIONS_TOPIC
from services.dispatcher.bus_worker import EMBEDDED_GROUP_ID
from tests.events import make_event
from tests.integration.conftest import ServiceCtl, metrics_text, sigterm_when_ready
from tests.ports import free_port

# The contract: a stop is honoured within a few seconds, even with Redis away.
STOP_S = 10


def _retries(port: int) -> float:
    text = metrics_text(port)
    match = re.search(r"^citybrain_redis_write_retries_total (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def _committed(bootstrap: str, tp: TopicPartition) -> int:
    """The group's committed offset in ``tp``: the next one it reads (-1: none)."""
    consumer = kafka.KafkaConsumer(bootstrap_servers=bootstrap, group_id=EMBEDDED_GROUP_ID)
    try:
        committed = consumer.committed(tp)
    finally:
        consumer.close()
    return -1 if committed is None else int(committed)


def test_run_stops_on_sigterm_with_redis_down(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, redis_ctl: ServiceCtl
) -> None:
    event = make_event(camera_id="replay-cam-9", track_id=424_242, ts_ms=int(time.time() * 1000))
    bus = KafkaBus(bootstrap_servers=kafka_bootstrap)
    try:
        bus.ensure_topics([VIOLATIONS_TOPIC])
    finally:
        bus.close()
    producer = kafka.KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        sent = producer.send(VIOLATIONS_TOPIC.name, event.to_json(), key=b"replay-cam-9").get(30)
    finally:
        producer.close()
    redis_ctl.stop()
    port = free_port()
    log_path = tmp_path / "run.log"
    returncode = sigterm_when_ready(
        [
            "run",
            f"--bus=kafka://{kafka_bootstrap}",
            f"--queue={redis_url}",
            f"--port={port}",
            "--camera=wuzhen-cam-02",
            "--resolution=640x360",
            f"--evidence-dir={tmp_path / 'evidence'}",
        ],
        log_path,
        ready=lambda: _retries(port) >= 1,
        waiting_for="a write to the stopped Redis retried",
        stop_s=STOP_S,
    )
    output = log_path.read_text()
    assert returncode == 0, output
    assert "Traceback" not in output, output
    assert re.search(r"^citybrain run: .*entries dispatched: 0;", output, re.MULTILINE), output
    # The batch was never written, so never committed: the group reads it again.
    tp = TopicPartition(VIOLATIONS_TOPIC.name, sent.partition)
    assert _committed(kafka_bootstrap, tp) <= sent.offset
