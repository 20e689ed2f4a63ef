"""The bus seam: keyed messages on named topics, consumer groups, commit after processing.

Two implementations share this interface: :mod:`.kafka` (production, kafka-python) and
:mod:`.memory` (unit tests and the embedded ``make run``). Both deliver one key's messages
in order, and both redeliver anything a consumer group has not committed (at-least-once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

Headers = tuple[tuple[str, bytes], ...]

# The largest message a bus client sends or fetches: dead letters carry the original bytes,
# so theirs is this, whatever the source topic accepts.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as it is created on start-up."""

    name: str
    partitions: int = 3
    retention_ms: int = 7 * 24 * 3600 * 1000
    max_message_bytes: int = 1_048_576


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One consumed record; ``offset`` is its position within ``partition``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    ts_ms: int = 0
    # Read again on purpose: a consumer that took the partition over replays history before
    # the group's committed offset to rebuild its state (see ``KafkaBus.subscribe``).
    replayed: bool = False

    def header(self, name: str) -> bytes | None:
        """The first header called ``name``, or None."""
        return next((v for k, v in self.headers if k == name), None)


class BusConsumer(Protocol):
    def poll(self, *, timeout_s: float, max_records: int = 500) -> list[BusMessage]:
        """Up to ``max_records`` messages, waiting at most ``timeout_s`` for the first."""
        ...

    def commit(self, messages: Sequence[BusMessage]) -> None:
        """Mark these messages (and everything before them in their partitions) processed."""
        ...

    def close(self) -> None:
        """Leave the group without committing anything more."""
        ...


class Bus(Protocol):
    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create any of these topics that do not exist yet."""
        ...

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        slot: int | None = None,
    ) -> None:
        """Queue one message; messages with the same key keep their order.

        The key's hash picks the partition, unless ``slot`` is given: the message then goes
        to partition ``slot`` mod the topic's partition count, so keys given consecutive
        slots spread evenly. Every message of one key must give the same slot.
        """
        ...

    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until everything published so far is acknowledged."""
        ...

    def subscribe(self, topics: Sequence[str], *, group_id: str) -> BusConsumer:
        """A consumer in ``group_id`` that resumes from the group's committed offsets."""
        ...

    def close(self) -> None: ...


class BusError(RuntimeError):
    """The bus could not do what was asked (broker unreachable, message too large, ...)."""


def open_bus(url: str) -> Bus:
    """Open a bus from a URL: ``kafka://HOST:PORT[,HOST:PORT]`` or ``memory://``.

    >>> type(open_bus("memory://")).__name__
    'InMemoryBus'
    """
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from services.common.bus.memory import InMemoryBus

        return InMemoryBus()
    if parts.scheme == "kafka":
        if not parts.netloc:
            raise ValueError(f"bus URL {url!r} names no broker; expected kafka://HOST:PORT")
        from services.common.bus.kafka import KafkaBus

        return KafkaBus(bootstrap_servers=parts.netloc)
    raise ValueError(f"bus URL {url!r}: scheme must be kafka:// or memory://")
