import time
import uuid
from collections.abc import Callable

import pytest

from services.common.bus import Bus, BusConsumer, BusMessage, TopicSpec
from services.common.events import EventValidationError, ViolationEvent
from tests.events import make_event

# Generous because a Kafka consumer needs a group join before its first record.
DEADLINE_S = 30.0


def drain(consumer: BusConsumer, count: int, *, deadline_s: float = DEADLINE_S) -> list[BusMessage]:
    """Poll until ``count`` messages arrived or the deadline passed."""
    got: list[BusMessage] = []
    stop = time.monotonic() + deadline_s
    while len(got) < count and time.monotonic() < stop:
        got.extend(consumer.poll(timeout_s=0.5, max_records=count - len(got)))
    return got


class BusContract:
    """Subclasses provide a ``bus`` fixture."""

    # How long to watch for a message that must not come; a Kafka consumer needs a group
    # join before it could see anything at all.
    quiet_s = 8.0

    @pytest.fixture
    def topic(self, bus: Bus) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        bus.ensure_topics([TopicSpec(name=name, partitions=3)])
        return name

    @pytest.fixture
    def group(self) -> Callable[[], str]:
        name = f"group-{uuid.uuid4().hex[:12]}"
        return lambda: name

    def test_order_is_kept_per_key(self, bus: Bus, topic: str, group: Callable[[], str]) -> None:
        keys = [b"cam-a", b"cam-b", b"cam-c"]
        for i in range(30):
            key = keys[i % 3]
            bus.publish(topic, f"{key.decode()}:{i}".encode(), key=key)
        bus.flush()
        consumer = bus.subscribe([topic], group_id=group())
        try:
            got = drain(consumer, 30)
        finally:
            consumer.close()
        assert len(got) == 30
        for key in keys:
            sequence = [int(m.value.split(b":")[1]) for m in got if m.key == key]
            assert sequence == sorted(sequence) and len(sequence) == 10

    def test_a_slot_picks_the_partition(
        self, bus: Bus, topic: str, group: Callable[[], str]
    ) -> None:
        for round_ in range(2):
            for slot in range(7):
                bus.publish(topic, f"{round_}".encode(), key=f"cam-{slot}".encode(), slot=slot)
        bus.flush()
        consumer = bus.subscribe([topic], group_id=group())
        try:
            got = drain(consumer, 14)
        finally:
            consumer.close()
        assert len(got) == 14
        assert {(m.key, m.partition) for m in got} == {
            (f"cam-{slot}".encode(), slot % 3) for slot in range(7)
        }
        for slot in range(7):
            rounds = [m.value for m in got if m.key == f"cam-{slot}".encode()]
            assert rounds == [b"0", b"1"]

    def test_key_and_headers_survive(self, bus: Bus, topic: str, group: Callable[[], str]) -> None:
        bus.publish(topic, b"payload", key=b"k", headers=(("camera_id", b"wuzhen-cam-01"),))
        bus.flush()
        consumer = bus.subscribe([topic], group_id=group())
        try:
            (message,) = drain(consumer, 1)
        finally:
            consumer.close()
        assert (message.key, message.value) == (b"k", b"payload")
        assert message.header("camera_id") == b"wuzhen-cam-01"
        assert message.header("missing") is None

    def test_uncommitted_messages_are_redelivered(
        self, bus: Bus, topic: str, group: Callable[[], str]
    ) -> None:
        for i in range(10):
            bus.publish(topic, str(i).encode(), key=b"one-key")
        bus.flush()
        first = bus.subscribe([topic], group_id=group())
        got = drain(first, 10)
        assert [m.value for m in got] == [str(i).encode() for i in range(10)]
        first.commit(got[:4])
        first.close()  # "crashes" before committing the rest

        second = bus.subscribe([topic], group_id=group())
        try:
            again = drain(second, 6)
            assert [m.value for m in again] == [str(i).encode() for i in range(4, 10)]
            second.commit(again)
        finally:
            second.close()

        third = bus.subscribe([topic], group_id=group())
        try:
            assert drain(third, 1, deadline_s=self.quiet_s) == []
        finally:
            third.close()

    def test_groups_are_independent(self, bus: Bus, topic: str) -> None:
        bus.publish(topic, b"x", key=b"k")
        bus.flush()
        for group_id in ("g1-" + topic, "g2-" + topic):
            consumer = bus.subscribe([topic], group_id=group_id)
            try:
                assert [m.value for m in drain(consumer, 1)] == [b"x"]
            finally:
                consumer.close()

    def test_malformed_message_is_reported_not_fatal(
        self, bus: Bus, topic: str, group: Callable[[], str]
    ) -> None:
        good = make_event()
        for value in (b"\x00garbage", b'{"schema": 1}', good.to_json()):
            bus.publish(topic, value, key=b"wuzhen-cam-01")
        bus.flush()
        consumer = bus.subscribe([topic], group_id=group())
        events, problems = [], []
        try:
            for message in drain(consumer, 3):
                try:
                    events.append(ViolationEvent.from_json(message.value))
                except EventValidationError as exc:
                    problems.append(str(exc))
        finally:
            consumer.close()
        assert events == [good]
        assert len(problems) == 2
        assert "not valid JSON" in problems[0]
        assert "violation_id" in problems[1]
