"""The production bus: Apache Kafka through kafka-python.

The producer is idempotent with ``acks=all``, so a retried send never duplicates a message,
and consumers commit explicitly, after processing, never on a timer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata

from services.common.bus import MAX_MESSAGE_BYTES, BusError, BusMessage, Headers, TopicSpec

log = logging.getLogger(__name__)

# Large enough for a 1080p JPEG frame; the topics are created with the same limit.


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
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=5,
                    max_request_size=MAX_MESSAGE_BYTES,
                    retries=2**31 - 1,
                    delivery_timeout_ms=120_000,
                )
            except KafkaError as exc:
                raise BusError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        return self._producer

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, client_id=self._client_id
            )
        except KafkaError as exc:
            raise BusError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
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

    def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has; 0 if it does not exist."""
        try:
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap_servers, client_id=self._client_id
            )
        except KafkaError as exc:
            raise BusError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        try:
            return len(consumer.partitions_for_topic(topic) or ())
        finally:
            consumer.close()

    def publish(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        try:
            self._producer_client().send(topic, value=value, key=key, headers=list(headers))
        except KafkaError as exc:
            raise BusError(f"publish to {topic} failed: {exc}") from exc

    def flush(self, timeout_s: float = 30.0) -> None:
        if self._producer is None:
            return
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise BusError(f"flush failed: {exc}") from exc

    def subscribe(self, topics: Sequence[str], *, group_id: str) -> KafkaBusConsumer:
        try:
            consumer = KafkaConsumer(
                *topics,
                bootstrap_servers=self.bootstrap_servers,
                client_id=self._client_id,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            )
        except KafkaError as exc:
            raise BusError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") from exc
        return KafkaBusConsumer(consumer)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None


class KafkaBusConsumer:
    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    def poll(self, *, timeout_s: float, max_records: int = 500) -> list[BusMessage]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusError(f"poll failed: {exc}") from exc
        return [
            BusMessage(
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
                key=r.key,
                value=r.value if r.value is not None else b"",
                headers=tuple((k, v if v is not None else b"") for k, v in (r.headers or ())),
                ts_ms=r.timestamp,
            )
            for records in batches.values()
            for r in records
        ]

    def commit(self, messages: Sequence[BusMessage]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for m in messages:
            tp = TopicPartition(m.topic, m.partition)
            if tp not in offsets or offsets[tp].offset < m.offset + 1:
                offsets[tp] = OffsetAndMetadata(m.offset + 1, "", -1)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets)
        except KafkaError as exc:
            raise BusError(f"commit failed: {exc}") from exc

    def close(self) -> None:
        self._consumer.close(autocommit=False)
