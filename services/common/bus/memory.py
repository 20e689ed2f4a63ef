"""An in-process bus with Kafka's ordering and at-least-once semantics (tests, make run)."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.common.bus import BusMessage, Headers, TopicSpec

DEFAULT_PARTITIONS = 3


@dataclass
class _Topic:
    partitions: list[list[BusMessage]]
    next_partition: int = 0


@dataclass
class _Group:
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


class InMemoryBus:
    """Topics are lists of partitions; a key always maps to the same partition."""

    def __init__(self, *, default_partitions: int = DEFAULT_PARTITIONS) -> None:
        self._default_partitions = default_partitions
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        self._cond = threading.Condition()

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        with self._cond:
            for spec in specs:
                self._topic(spec.name, spec.partitions)

    def _topic(self, name: str, partitions: int | None = None) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            count = partitions or self._default_partitions
            topic = self._topics[name] = _Topic(partitions=[[] for _ in range(count)])
        return topic

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        slot: int | None = None,
    ) -> None:
        with self._cond:
            t = self._topic(topic)
            if slot is not None:
                partition = slot % len(t.partitions)
            elif key is None:
                partition = t.next_partition % len(t.partitions)
                t.next_partition += 1
            else:
                partition = zlib.crc32(key) % len(t.partitions)
            log = t.partitions[partition]
            log.append(
                BusMessage(
                    topic=topic,
                    partition=partition,
                    offset=len(log),
                    key=key,
                    value=value,
                    headers=tuple(headers),
                    ts_ms=int(time.time() * 1000),
                )
            )
            self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Publishing is synchronous here, so there is never anything in flight."""

    def subscribe(self, topics: Sequence[str], *, group_id: str) -> InMemoryConsumer:
        with self._cond:
            group = self._groups.setdefault(group_id, _Group())
            for name in topics:
                self._topic(name)
        return InMemoryConsumer(self, list(topics), group)

    def close(self) -> None:
        """Nothing to release; the data lives as long as the object."""

    def end_offsets(self, topic: str) -> list[int]:
        """Each partition's next offset: how many messages it holds."""
        with self._cond:
            return [len(p) for p in self._topic(topic).partitions]


class InMemoryConsumer:
    """Reads from its group's committed offsets; closing without commit means redelivery."""

    def __init__(self, bus: InMemoryBus, topics: list[str], group: _Group) -> None:
        self._bus = bus
        self._topics = topics
        self._group = group
        with bus._cond:
            self._position = {
                (name, p): group.committed.get((name, p), 0)
                for name in topics
                for p in range(len(bus._topics[name].partitions))
            }

    def _take(self, max_records: int) -> list[BusMessage]:
        out: list[BusMessage] = []
        for (name, p), pos in self._position.items():
            log = self._bus._topics[name].partitions[p]
            batch = log[pos : pos + max_records - len(out)]
            out.extend(batch)
            self._position[(name, p)] = pos + len(batch)
            if len(out) >= max_records:
                break
        return out

    def poll(self, *, timeout_s: float, max_records: int = 500) -> list[BusMessage]:
        deadline = time.monotonic() + timeout_s
        with self._bus._cond:
            while True:
                batch = self._take(max_records)
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0:
                    return batch
                self._bus._cond.wait(remaining)

    def commit(self, messages: Sequence[BusMessage]) -> None:
        with self._bus._cond:
            for m in messages:
                key = (m.topic, m.partition)
                self._group.committed[key] = max(self._group.committed.get(key, 0), m.offset + 1)

    def close(self) -> None:
        """Uncommitted messages stay uncommitted: the next consumer in the group gets them."""
