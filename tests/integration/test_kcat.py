"""An outside Kafka client (kcat, from apt) reads what citybrain publishes."""

import json
import shutil
import subprocess

import pytest

from services.common.bus import TopicSpec
from services.common.bus.kafka import KafkaBus
from services.common.events import ViolationEvent, ViolationType
from tests.events import make_event


def test_kcat_reads_a_published_violation(kafka_bootstrap: str, unique_name: str) -> None:
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.fail("kcat is not installed (apt-get install kcat)")
    event = make_event(
        violation_type=ViolationType.ILLEGAL_PARKING,
        camera_id="hangzhou-cam-03",
        frame=120,
        ts_ms=1_700_000_012_000,
        track_id=4,
        confidence=0.8,
    )
    bus = KafkaBus(bootstrap_servers=kafka_bootstrap)
    try:
        bus.ensure_topics([TopicSpec(name=unique_name, partitions=1)])
        bus.publish(unique_name, event.to_json(), key=event.camera_id.encode())
        bus.flush()
    finally:
        bus.close()
    result = subprocess.run(
        [
            kcat,
            "-b",
            kafka_bootstrap,
            "-C",
            "-t",
            unique_name,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key, value = result.stdout.strip().split("\t", 1)
    assert key == "hangzhou-cam-03"
    assert ViolationEvent.from_dict(json.loads(value)) == event
