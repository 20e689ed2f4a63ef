"""Table changelogs written a record batch at a time, through aiokafka's own producer."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, cast

from aiokafka.producer.message_accumulator import BatchBuilder
from faust.tables.base import Collection
from faust.transport.drivers import aiokafka
from faust.types import TableT

from services.dispatcher.steps import StateChange


async def send_changelog(
    table: TableT[str, Any], changes: Sequence[StateChange]
) -> list[Awaitable[Any]]:
    """Send changes of ``table`` straight to the producer; returns their deliveries.

    A change whose value is ``None`` is a tombstone. ``Table.send_changelog``
    goes through faust's send buffer, a task and the sensors for every record, and even a
    plain ``send`` per record costs as much as the rest of an event's path; here each
    partition's records go as one record batch. The records are the same (the table's
    serializers), and faust's commit flushes this producer as it does the buffer.
    """
    # The concrete table (faust's Collection) holds the serializers; TableT does not show them.
    serializers = cast(Collection, table)
    topic = table.changelog_topic
    name = topic.get_topic_name()
    producer = cast(aiokafka.Producer, table.app.producer)._ensure_producer()
    batches: dict[int, BatchBuilder] = {}
    deliveries: list[Awaitable[Any]] = []
    for change in changes:
        partition, key = change.partition, change.key
        key_bytes, _ = topic.prepare_key(key, serializers.key_serializer)
        value_bytes = None
        if change.value is not None:
            value_bytes, _ = topic.prepare_value(change.value, serializers.value_serializer)
        batch = batches.get(partition)
        if batch is None or batch.append(key=key_bytes, value=value_bytes, timestamp=None) is None:
            if batch is not None:  # full: send it and start the partition's next one
                deliveries.append(await producer.send_batch(batch, name, partition=partition))
            batch = batches[partition] = producer.create_batch()
            if batch.append(key=key_bytes, value=value_bytes, timestamp=None) is None:
                raise ValueError(f"{name}: the record for {key!r} is bigger than a batch")
    for partition, batch in batches.items():
        deliveries.append(await producer.send_batch(batch, name, partition=partition))
    return deliveries
