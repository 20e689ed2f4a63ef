import threading
import time

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


def test_two_members_get_equal_shares_of_slotted_keys(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """30 cameras dealt over 12 partitions: round-robin assignment gives two detectors 15
    each (the range assignor gave 18 and 12, and the key hash 12 and 18 of the stack's)."""
    bus = KafkaBus(bootstrap_servers=kafka_bootstrap)
    bus.ensure_topics([TopicSpec(name=unique_name, partitions=12, retention_ms=60_000)])
    members = [bus.subscribe([unique_name], group_id=unique_name) for _ in range(2)]
    keys: list[set[bytes | None]] = [set(), set()]
    stop = threading.Event()

    def poll(index: int) -> None:
        while not stop.is_set():
            keys[index].update(m.key for m in members[index].poll(timeout_s=0.2))

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        # Both members must have joined before anything is published, or the first one
        # takes messages that the rebalance then hands to the second.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            sum(len(m.assigned_partitions()) for m in members) != 12
            or not all(m.assigned_partitions() for m in members)
        ):
            time.sleep(0.2)
        for slot in range(30):
            bus.publish(unique_name, b"frame", key=f"cam-{slot:02d}".encode(), slot=slot)
        bus.flush()
        while time.monotonic() < deadline and len(keys[0]) + len(keys[1]) < 30:
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for member in members:
            member.close()
        bus.close()
    assert sorted(len(k) for k in keys) == [15, 15]
    assert not keys[0] & keys[1]
