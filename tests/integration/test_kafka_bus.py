import pytest

from services.common.bus import TopicSpec
from services.common.bus.kafka import KafkaBus
from tests.contract.bus import BusContract, drain


class TestKafkaBus(BusContract):
    @pytest.fixture
    def bus(self, kafka_bootstrap: str) -> KafkaBus:
        bus = KafkaBus(bootstrap_servers=kafka_bootstrap)
        yield bus  # type: ignore[misc]
        bus.close()


def test_topics_are_created_with_their_partitions(kafka_bootstrap: str, unique_name: str) -> None:
    bus = KafkaBus(bootstrap_servers=kafka_bootstrap)
    spec = TopicSpec(name=unique_name, partitions=4, retention_ms=60_000)
    bus.ensure_topics([spec])
    bus.ensure_topics([spec])  # idempotent
    partitions = set()
    for i in range(40):
        bus.publish(unique_name, b"x", key=f"k{i}".encode())
    bus.flush()
    consumer = bus.subscribe([unique_name], group_id=unique_name)
    try:
        partitions = {m.partition for m in drain(consumer, 40)}
    finally:
        consumer.close()
        bus.close()
    assert partitions == {0, 1, 2, 3}
