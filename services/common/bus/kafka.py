"""The production bus: Apache Kafka through kafka-python.

The producer is idempotent with ``acks=all``, so a retried send never duplicates a message,
and consumers commit explicitly, after processing, never on a timer.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from services.common.bus import MAX_MESSAGE_BYTES, BusError, BusMessage, Headers, TopicSpec

log = logging.getLogger(__name__)

# How long a start-up check waits for a TCP connection to a bootstrap server.
PROBE_TIMEOUT_S = 5.0
# How long a client waits for a bootstrap server to answer (kafka-python's default is 30 s):
# a port that accepts connections but never speaks Kafka fails within this.
BOOTSTRAP_TIMEOUT_MS = 10_000
# How long a commit, an offset lookup or a consumer's close may wait for the broker
# (kafka-python waits its 30 s request timeout, or for ever): a consumer stopping with the
# broker gone gives up within this, and what it did not commit is read again by the next
# owner.
COORDINATOR_TIMEOUT_MS = 5_000

# A history read gives up when a partition it has not finished sends nothing for this long.
HISTORY_STALL_S = 10.0

# Large enough for a 1080p JPEG frame; the topics are created with the same limit.


def unreachable(bootstrap_servers: str, exc: KafkaError) -> BusError:
    """The one-line error for a Kafka client that could not start.

    >>> str(unreachable("127.0.0.1:9", KafkaTimeoutError("Unable to bootstrap from x")))
    'cannot reach Kafka at 127.0.0.1:9: no answer within 10 s'
    """
    if isinstance(exc, KafkaTimeoutError):
        return BusError(
            f"cannot reach Kafka at {bootstrap_servers}: "
            f"no answer within {BOOTSTRAP_TIMEOUT_MS // 1000} s"
        )
    return BusError(f"cannot reach Kafka at {bootstrap_servers}: {exc}")


class KafkaBus:
    """A lazily connected producer plus factories for admin and consumer clients."""

    def __init__(self, *, bootstrap_servers: str, client_id: str = "citybrain") -> None:
        self.bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._producer: KafkaProducer | None = None

    def _producer_client(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=True,
                    # A frame (50-150 KB) is larger than kafka-python's 16 KB batch, so
                    # each one went as a request of its own, woke the sender thread, and
                    # cost the broker a request: a load generator's sender thread took a
                    # third of its CPU. Batches of up to 1 MiB gathered for 25 ms carry a
                    # few frames per request.
                    linger_ms=25,
                    batch_size=1024 * 1024,
                    max_request_size=MAX_MESSAGE_BYTES,
                    retries=2**31 - 1,
                    delivery_timeout_ms=120_000,
                )
            except KafkaError as exc:
                raise unreachable(self.bootstrap_servers, exc) from exc
        return self._producer

    def _probe(self) -> None:
        """Raise :class:`BusError` at once if no bootstrap server accepts a connection.

        kafka-python's own bootstrap retries for 30 s before it says so.
        """
        problems = []
        for server in self.bootstrap_servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
            except (OSError, ValueError) as exc:
                problems.append(f"{server.strip()}: {exc}")
            else:
                return
        raise BusError(f"cannot reach Kafka at {'; '.join(problems)}")

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        self._probe()
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                client_id=self._client_id,
            )
        except KafkaError as exc:
            raise unreachable(self.bootstrap_servers, exc) from exc
        try:
            existing = set(admin.list_topics())
            wanted: dict[str, dict[str, Any]] = {
                spec.name: {
                    "num_partitions": spec.partitions,
                    "replication_factor": 1,
                    "configs": {
                        "retention.ms": str(spec.retention_ms),
                        "max.message.bytes": str(spec.max_message_bytes),
                    },
                }
                for spec in specs
                if spec.name not in existing
            }
            if wanted:
                try:
                    admin.create_topics(wanted, wait_for_metadata=True)
                except TopicAlreadyExistsError:
                    log.debug("topics created concurrently by another process: %s", list(wanted))
        finally:
            admin.close()

    def _consumer(self, **options: Any) -> KafkaConsumer:
        """A consumer client of this bus's brokers (``options`` as kafka-python takes them),
        committing only when told to; ``BusError`` when no broker answers."""
        try:
            return KafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                client_id=self._client_id,
                enable_auto_commit=False,
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                **options,
            )
        except KafkaError as exc:
            raise unreachable(self.bootstrap_servers, exc) from exc

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has; 0 if it does not exist."""
        consumer = self._consumer()
        try:
            return len(consumer.partitions_for_topic(topic) or ())
        finally:
            consumer.close()

    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Headers = (),
        slot: int | None = None,
    ) -> None:
        try:
            producer = self._producer_client()
            # The producer's cached metadata; it waits for the topic's on first use only.
            partition = None if slot is None else slot % len(producer.partitions_for(topic))
            producer.send(topic, value=value, key=key, headers=list(headers), partition=partition)
        except KafkaError as exc:
            raise BusError(f"publish to {topic} failed: {exc}") from exc

    def flush(self, timeout_s: float = 30.0) -> None:
        if self._producer is None:
            return
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise BusError(f"flush failed: {exc}") from exc

    def subscribe(
        self,
        topics: Sequence[str],
        *,
        group_id: str,
        handover_replay_s: float = 0.0,
        session_timeout_s: float | None = None,
    ) -> KafkaBusConsumer:
        """A consumer in ``group_id``; see :class:`HandoverReplay` for ``handover_replay_s``.

        ``session_timeout_s`` is how long the group waits for a member that stopped
        heart-beating (a crashed process) before its partitions move on; kafka-python's
        default is 45 s. Heartbeats go at a third of it.
        """
        timeouts: dict[str, int] = {}
        if session_timeout_s is not None:
            timeouts = {
                "session_timeout_ms": round(session_timeout_s * 1000),
                "heartbeat_interval_ms": round(session_timeout_s * 1000 / 3),
            }
        consumer = self._consumer(
            **timeouts,
            group_id=group_id,
            auto_offset_reset="earliest",
            # Partitions dealt in turn: with cameras dealt the same way (``slot`` in
            # ``publish``), each member gets as many cameras as the next, give or take one.
            # The range assignor gives each member a block of partitions, which leaves
            # blocks unequal whenever the partitions are (30 cameras on 12 partitions: 18
            # and 12).
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
        )
        replay = HandoverReplay(consumer, replay_ms=round(handover_replay_s * 1000))
        consumer.subscribe(list(topics), listener=replay)
        return KafkaBusConsumer(consumer, replay=replay, group_id=group_id)

    def history(
        self, topic: str, *, key: bytes, since_ms: int, until_ms: int
    ) -> Iterator[BusMessage]:
        """The messages of ``key`` on ``topic`` that were sent between ``since_ms`` and
        ``until_ms`` (Unix ms, the producer's timestamps), partition after partition in
        offset order, and no later than the end of each partition when the read began.

        Read without a consumer group: nothing is committed, and no group's members are
        disturbed (a running stack's detectors go on as they were). Raises ``BusError`` when
        the broker cannot be reached, the topic does not exist, or a read stalls.
        """
        self._probe()
        consumer = self._consumer()
        try:
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                raise BusError(f"no topic {topic!r} at {self.bootstrap_servers}")
            starts = consumer.offsets_for_times(
                {tp: since_ms for tp in partitions}, timeout_ms=COORDINATOR_TIMEOUT_MS
            )
            ends = consumer.end_offsets(partitions)
            for tp in partitions:
                start = starts.get(tp)
                if start is None or start.offset >= ends[tp]:
                    continue  # nothing sent there since since_ms
                consumer.assign([tp])
                consumer.seek(tp, start.offset)
                yield from _read_until(consumer, tp, key=key, until_ms=until_ms, end=ends[tp])
        except KafkaError as exc:
            raise BusError(f"reading {topic} failed: {exc}") from exc
        finally:
            consumer.close(autocommit=False, timeout_ms=COORDINATOR_TIMEOUT_MS)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None


class HandoverReplay(ConsumerRebalanceListener):  # type: ignore[misc]
    """Replays recent history of each partition this consumer takes over from another one.

    A stateful consumer (a detector's per-camera pipeline) that takes a partition over
    would start cold at the group's committed offset. Instead it starts ``replay_ms`` of
    history earlier: the messages before the committed offset come back marked
    ``replayed``, to rebuild state from, not to act on (the previous owner did), and the
    consumer is warm by the time it reaches the first message nobody has handled. A
    partition with no committed offset starts ``replay_ms`` back with nothing marked (or at
    its end, if nothing is that recent), so a new group never works through a whole topic
    of stale frames. Partitions kept across a rebalance
    (kafka-python's eager protocol revokes and reassigns them all) are not replayed.

    kafka-python runs this listener on its network thread, where no blocking call is
    allowed, so the listener only notes the partitions taken; :meth:`seek_taken` looks their
    offsets up and seeks, from the polling thread.
    """

    def __init__(self, consumer: KafkaConsumer, *, replay_ms: int) -> None:
        self._consumer = consumer
        self._replay_ms = replay_ms
        self._owned: set[TopicPartition] = set()
        self.taken: set[TopicPartition] = set()
        # Offsets below these (per partition) were handled by a previous owner.
        self.handled_below: dict[TopicPartition, int] = {}
        self.assignments = 0

    def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do until the new assignment is known."""

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.assignments += 1
        self._owned, previous = set(assigned), self._owned
        self.handled_below = {tp: o for tp, o in self.handled_below.items() if tp in self._owned}
        self.taken = (self.taken | (self._owned - previous)) & self._owned
        if self._replay_ms <= 0:
            self.taken = set()

    def seek_taken(self) -> set[TopicPartition]:
        """Seek every partition taken since the last call; returns them."""
        taken, self.taken = self.taken, set()
        if not taken:
            return taken
        since_ms = int(time.time() * 1000) - self._replay_ms
        try:
            starts = self._consumer.offsets_for_times(
                {tp: since_ms for tp in taken}, timeout_ms=COORDINATOR_TIMEOUT_MS
            )
            for tp in taken:
                committed = self._consumer.committed(tp, timeout_ms=COORDINATOR_TIMEOUT_MS)
                found = starts.get(tp)
                start = found.offset if found is not None else committed
                if committed is not None:
                    self.handled_below[tp] = committed
                    start = min(start, committed) if start is not None else committed
                if start is not None:
                    self._consumer.seek(tp, start)
                else:  # never committed and nothing recent: only what comes next is live
                    self._consumer.seek_to_end(tp)
        except KafkaError as exc:
            # Not fatal: the partition then starts cold at the committed offset.
            log.warning("handover replay skipped for %s: %s", sorted(taken), exc)
        return taken

    def replayed(self, topic: str, partition: int, offset: int) -> bool:
        return offset < self.handled_below.get(TopicPartition(topic, partition), -1)


class KafkaBusConsumer:
    def __init__(
        self, consumer: KafkaConsumer, *, replay: HandoverReplay | None = None, group_id: str = ""
    ) -> None:
        self._consumer = consumer
        self._replay = replay
        self.group_id = group_id

    @property
    def assignments(self) -> int:
        """How many partition assignments (rebalances) this consumer has been through."""
        return self._replay.assignments if self._replay else 0

    def assigned_partitions(self) -> set[TopicPartition]:
        """The partitions the group gave this member at its last rebalance."""
        return set(self._consumer.assignment())

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the end of each assigned partition, from the last fetch's high
        watermark (no request to the broker); partitions not fetched yet are left out."""
        lags: dict[tuple[str, int], int] = {}
        for tp in self.assigned_partitions():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                # No wait: without it a position not known yet is looked up from the
                # coordinator, and with the broker gone kafka-python waits for ever.
                position = self._consumer.position(tp, timeout_ms=0)
            except KafkaError:
                continue
            if position is not None:
                lags[(tp.topic, tp.partition)] = max(highwater - position, 0)
        return lags

    def poll(self, *, timeout_s: float, max_records: int = 500) -> list[BusMessage]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
            if self._replay is not None and self._replay.taken:
                # Records of a just-taken partition start at the committed offset; they come
                # again after the replay that the seek sets up.
                sought = self._replay.seek_taken()
                batches = {tp: records for tp, records in batches.items() if tp not in sought}
        except KafkaError as exc:
            raise BusError(f"poll failed: {exc}") from exc
        return [
            _message(
                r,
                replayed=self._replay is not None
                and self._replay.replayed(r.topic, r.partition, r.offset),
            )
            for records in batches.values()
            for r in records
        ]

    def commit(self, messages: Sequence[BusMessage]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for m in messages:
            if m.replayed:  # committing it would move the group's offset backwards
                continue
            tp = TopicPartition(m.topic, m.partition)
            if tp not in offsets or offsets[tp].offset < m.offset + 1:
                offsets[tp] = OffsetAndMetadata(m.offset + 1, "", -1)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, timeout_ms=COORDINATOR_TIMEOUT_MS)
        except KafkaError as exc:
            raise BusError(f"commit failed: {exc}") from exc

    def close(self) -> None:
        self._consumer.close(autocommit=False, timeout_ms=COORDINATOR_TIMEOUT_MS)


def _read_until(
    consumer: KafkaConsumer, tp: TopicPartition, *, key: bytes, until_ms: int, end: int
) -> Iterator[BusMessage]:
    """``key``'s messages of one assigned partition, from its position up to ``end`` or the
    first message sent after ``until_ms``."""
    stalled_since = time.monotonic()
    while consumer.position(tp, timeout_ms=COORDINATOR_TIMEOUT_MS) < end:
        records = consumer.poll(timeout_ms=1000, max_records=200).get(tp, [])
        if not records:
            if time.monotonic() - stalled_since > HISTORY_STALL_S:
                raise BusError(
                    f"reading {tp.topic}/{tp.partition}: no data for {HISTORY_STALL_S:g} s"
                )
            continue
        stalled_since = time.monotonic()
        for record in records:
            if record.timestamp > until_ms or record.offset >= end:
                return
            if record.key == key:
                yield _message(record)


def _message(record: Any, *, replayed: bool = False) -> BusMessage:
    """A kafka-python ``ConsumerRecord`` as the bus's message."""
    return BusMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if record.value is not None else b"",
        headers=tuple((k, v if v is not None else b"") for k, v in (record.headers or ())),
        ts_ms=record.timestamp,
        replayed=replayed,
    )
