"""The Kafka frame source commits what it handled every COMMIT_INTERVAL_S, and on stop."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from services.common.bus import BusError, BusMessage, TopicSpec
from services.common.bus.memory import InMemoryBus, InMemoryConsumer
from services.common.frames import FRAMES_TOPIC, Frame
from services.detector import sources
from services.detector.sources import KafkaFrameSource

GROUP = "detectors"


@dataclass
class OneAtATime:
    """An in-memory consumer that hands out one message a poll, as a busy broker does."""

    inner: InMemoryConsumer
    commits: list[int] = field(default_factory=list)

    def poll(self, *, timeout_s: float, max_records: int = 500) -> list[BusMessage]:
        return self.inner.poll(timeout_s=timeout_s, max_records=1)

    def commit(self, messages: Sequence[BusMessage]) -> None:
        self.commits.append(max(m.offset for m in messages) + 1)
        self.inner.commit(messages)

    def close(self) -> None:
        self.inner.close()


@dataclass
class FramesBus:
    """The two calls the source makes of a ``KafkaBus``, served by an in-memory bus."""

    inner: InMemoryBus = field(default_factory=lambda: InMemoryBus(default_partitions=1))
    consumer: OneAtATime | None = None
    consumer_type: type[OneAtATime] = OneAtATime

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        self.inner.ensure_topics(specs)

    def subscribe(self, topics: Sequence[str], *, group_id: str, **_: object) -> OneAtATime:
        self.consumer = self.consumer_type(self.inner.subscribe(topics, group_id=group_id))
        return self.consumer


def publish(bus: FramesBus, count: int) -> None:
    for index in range(count):
        frame = Frame(camera_id="cam-1", index=index, ts_ms=index * 200, jpeg=b"jpeg")
        bus.inner.publish(FRAMES_TOPIC.name, b"jpeg", key=b"cam-1", headers=frame.headers())


def read_all(bus: FramesBus, count: int) -> list[int]:
    """Publish ``count`` frames, read them all, stop the source; the commits it made."""
    publish(bus, count)
    stop = threading.Event()
    source = KafkaFrameSource(bus, group_id=GROUP, stop=stop)  # type: ignore[arg-type]
    for seen, _item in enumerate(source, start=1):
        if seen == count:
            stop.set()
    assert bus.consumer is not None
    return bus.consumer.commits


def test_frames_read_within_one_interval_are_committed_once_on_stop() -> None:
    bus = FramesBus()
    assert read_all(bus, 30) == [30]
    # Nothing is left for the group: a restarted detector does not do them again.
    assert bus.inner.subscribe([FRAMES_TOPIC.name], group_id=GROUP).poll(timeout_s=0) == []


def test_once_the_interval_has_passed_every_poll_commits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "COMMIT_INTERVAL_S", 0.0)
    assert read_all(FramesBus(), 5) == [1, 2, 3, 4, 5]


def test_a_reader_that_stops_taking_frames_commits_those_it_took_before() -> None:
    """The detector breaks off after its fifth frame (SIGTERM): the first four are
    committed; the fifth, handed out but never asked past, is read again by the next owner."""
    bus = FramesBus()
    publish(bus, 30)
    source = iter(KafkaFrameSource(bus, group_id=GROUP, stop=threading.Event()))  # type: ignore[arg-type]
    for _ in range(5):
        next(source)
    del source  # what a `for` loop left by `break` does with it
    assert bus.consumer is not None
    assert bus.consumer.commits == [4]


@dataclass
class BrokerAway(OneAtATime):
    """Commits fail while the broker is away: the first ``failing`` of them."""

    failing: int = 2

    def commit(self, messages: Sequence[BusMessage]) -> None:
        if self.failing:
            self.failing -= 1
            raise BusError("commit failed: KafkaConnectionError: 111 ECONNREFUSED")
        super().commit(messages)


def test_a_failed_commit_is_counted_and_the_latest_offsets_are_committed_next_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "COMMIT_INTERVAL_S", 0.0)
    bus = FramesBus(consumer_type=BrokerAway)
    publish(bus, 5)
    failures: list[None] = []
    stop = threading.Event()
    source = KafkaFrameSource(
        bus,  # type: ignore[arg-type]
        group_id=GROUP,
        stop=stop,
        on_commit_failed=lambda: failures.append(None),
    )
    for seen, _item in enumerate(source, start=1):
        if seen == 5:
            stop.set()
    assert len(failures) == 2
    assert bus.consumer is not None
    # The frames of the failed commits are in the next one; nothing was lost or skipped.
    assert bus.consumer.commits == [3, 4, 5]
