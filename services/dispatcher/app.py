"""The faust app that runs the dispatch core on the ``violations`` topic.

No loss, no duplicates:

- faust's consumer hands the source topic's messages, a fetched batch at a time, to the
  :class:`~services.dispatcher.intake.Intake`, which tracks them unacked. One writer task
  handles them batch after batch, in order. A batch is planned by the pure core, its dead
  letters are produced, its entries are written to the control-center queue in one call
  (retrying with backoff while Redis is away), its state is sent to the tables' changelogs,
  and only once the dead letters and the state are on the broker are its messages acked.
  faust commits only acked offsets.
- A crash anywhere before the commit means redelivery. The queue's append and repeat are
  idempotent per violation id, so a redelivered event never creates a second entry.
- While the writer is busy the consumer keeps fetching, so fetching and writing overlap
  and batches grow with the load; the intake pauses partitions once it holds a few
  batches, so memory stays bounded while Redis is away.

Scale-out: run more processes with the same app id; they share the consumer group, and each
table partition follows its source partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.tables.base import Collection
from faust.transport.drivers import aiokafka
from faust.types import Message, TableT
from prometheus_client import CollectorRegistry

from services.common.config.catalogue import Catalogue
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC
from services.common.lag import ConsumerLagGauge
from services.common.queue import (
    ControlCenterQueue,
)
from services.dispatcher.config import DispatchConfig
from services.dispatcher.core import (
    DeadLetter,
    Dispatcher,
    GroupState,
    Plan,
)
from services.dispatcher.executor import PlanExecutor
from services.dispatcher.intake import Intake
from services.dispatcher.metrics import DispatcherMetrics, instrument
from services.dispatcher.transport import App, Consumer
from services.dispatcher.writer import write_in_order

log = logging.getLogger(__name__)
# Lag is sampled this often; Prometheus scrapes every few seconds, so finer is wasted.
LAG_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class DispatcherSettings:
    """Everything a dispatcher process needs, resolved from the CLI and config files."""

    bootstrap_servers: str
    source_partitions: int
    config: DispatchConfig
    catalogue: Catalogue
    # faust's data directory (faust's default is ``<app id>-data`` in the working
    # directory). The tables live in memory and are rebuilt from their changelogs, so
    # nothing in it has to outlive the process.
    datadir: Path
    app_id: str = "citybrain-dispatcher"
    topic: str = VIOLATIONS_TOPIC.name
    dlq_topic: str = VIOLATIONS_DLQ_TOPIC.name
    web_host: str = "0.0.0.0"
    web_port: int = 6066


class GroupTableView(Mapping[str, GroupState]):
    """The core's read-only view of the groups table (JSON dicts in faust's store).

    ``newer`` holds the groups of a batch still being written, not in the table yet; they
    are read first.
    """

    def __init__(self, store: Any, *, newer: Mapping[str, GroupState]) -> None:
        self._store = store
        self._newer = newer

    def __getitem__(self, key: str) -> GroupState:
        group: GroupState | None = self.get(key)
        if group is None:
            raise KeyError(key)
        return group

    def get(self, key: str, default: Any = None) -> Any:
        # Most keys are new: Mapping.get would raise and catch a KeyError for each of them.
        group = self._newer.get(key)
        if group is not None:
            return group
        value = self._store.get(key)
        return default if value is None else GroupState.from_dict(value)

    def __iter__(self) -> Iterator[str]:
        yield from self._newer
        yield from (key for key in self._store if key not in self._newer)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class BatchHandler:
    """Plans a batch and carries out its plan: dead letters, queue writes, table state."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        queue: ControlCenterQueue,
        metrics: DispatcherMetrics,
        dlq: faust.TopicT,
        groups: TableT[str, Any],
        counters: TableT[str, Any],
    ) -> None:
        self._dispatcher = dispatcher
        self._executor = PlanExecutor(
            queue=queue, metrics=metrics, retry=dispatcher.config.redis_retry
        )
        self._metrics = metrics
        self._dlq = dlq
        self._groups = groups
        self._counters = counters
        # The newest detection time seen: the clock that expires old group state.
        self.latest_ts_ms = 0
        # Batches and the prune timer both change state and send it; each does so whole.
        self._state_lock = asyncio.Lock()

    def plan(self, messages: Sequence[Message], *, newer: Mapping[str, GroupState]) -> Plan:
        raws = [message.value or b"" for message in messages]
        self._metrics.events.inc(len(raws))
        return self._dispatcher.plan(
            raws,
            state=GroupTableView(self._groups.data, newer=newer),
            now_ms=int(time.time() * 1000),
        )

    async def write(self, plan: Plan, messages: Sequence[Message]) -> list[Awaitable[Any]]:
        """Write a batch's entries; returns the deliveries (dead letters and state) that must
        reach the broker before its messages may be acked."""
        deliveries = [
            await self._dead_letter(message, decision)
            for message, decision in zip(messages, plan.decisions, strict=True)
            if isinstance(decision, DeadLetter)
        ]
        await self._executor.write_entries(plan)
        await self._executor.write_repeats(plan)
        # Only now: state that says "handled" must never reach the changelog before the
        # entries it stands for are in the queue, or a crash in between would lose them.
        async with self._state_lock:
            deliveries += await self._store_state(plan, messages)
        return deliveries

    async def _dead_letter(self, message: Message, decision: DeadLetter) -> Awaitable[Any]:
        headers = self._executor.dead_letter(
            decision, topic=message.topic, partition=message.partition, offset=message.offset
        )
        delivery: Awaitable[Any] = await self._dlq.send(
            key=message.key, value=message.value or b"", headers=list(headers)
        )
        return delivery

    async def _store_state(self, plan: Plan, messages: Sequence[Message]) -> list[Awaitable[Any]]:
        """Write changed state beside its source message: the same partition number.

        Returns the changelog deliveries.
        """
        group_changes = []
        for key, group in plan.groups.items():
            partition = messages[plan.group_sources[key]].partition
            value = {**group.to_dict(), "partition": partition}
            self._groups.data[key] = value
            group_changes.append((partition, key, value))
            self.latest_ts_ms = max(self.latest_ts_ms, group.last_ts_ms)
        counter_changes = [
            (partition, camera_id, self._counters.data[camera_id])
            for camera_id, partition in self._count_per_camera(plan, messages).items()
        ]
        return [
            *await send_changelog(self._groups, group_changes),
            *await send_changelog(self._counters, counter_changes),
        ]

    def _count_per_camera(self, plan: Plan, messages: Sequence[Message]) -> dict[str, int]:
        """Count the batch's outcomes per camera; returns the cameras touched, by partition."""
        touched: dict[str, int] = {}
        for message, decision in zip(messages, plan.decisions, strict=True):
            if isinstance(decision, DeadLetter):
                continue
            counts = self._counters.data.get(decision.camera_id) or {}
            outcome = type(decision).__name__.lower()
            self._counters.data[decision.camera_id] = {
                **counts,
                outcome: counts.get(outcome, 0) + 1,
            }
            touched[decision.camera_id] = message.partition
        return touched

    async def prune(self) -> int:
        """Forget groups older than the dedup horizon; returns how many were dropped."""
        async with self._state_lock:
            store = self._groups.data
            expired = [
                (key, value["partition"])
                for key, value in list(store.items())
                if self._dispatcher.expired(
                    GroupState.from_dict(value), latest_ts_ms=self.latest_ts_ms
                )
            ]
            for key, _ in expired:
                del store[key]
            # Tombstones, so that compaction drops the keys and recovery stays short.
            await send_changelog(
                self._groups, [(partition, key, None) for key, partition in expired]
            )
        return len(expired)


async def send_changelog(
    table: TableT[str, Any], changes: Sequence[tuple[int, str, Any]]
) -> list[Awaitable[Any]]:
    """Send changes of ``table`` straight to the producer; returns their deliveries.

    ``changes`` are (partition, key, value) with ``None`` as a tombstone. ``Table.send_changelog``
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
    for partition, key, value in changes:
        key_bytes, _ = topic.prepare_key(key, serializers.key_serializer)
        value_bytes = None
        if value is not None:
            value_bytes, _ = topic.prepare_value(value, serializers.value_serializer)
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


def build_app(
    settings: DispatcherSettings,
    *,
    queue: ControlCenterQueue,
    registry: CollectorRegistry,
) -> faust.App:
    """Wire topics, tables, the writer, the prune timer and ``/metrics`` into a faust app."""
    config = settings.config
    partitions = settings.source_partitions
    app = App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        datadir=settings.datadir,
        autodiscover=False,
        # Changelog partitions must line up with the source topic's.
        topic_partitions=partitions,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=config.consumer.commit_interval_s,
        broker_session_timeout=config.consumer.session_timeout_s,
        broker_heartbeat_interval=config.consumer.heartbeat_interval_s,
        # A dead letter may be as big as the largest accepted message.
        producer_max_request_size=VIOLATIONS_TOPIC.max_message_bytes + 64 * 1024,
        consumer_max_fetch_size=VIOLATIONS_TOPIC.max_message_bytes + 64 * 1024,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
    )
    source = app.topic(
        settings.topic, key_serializer="raw", value_serializer="raw", value_type=bytes
    )
    dlq = app.topic(settings.dlq_topic, key_serializer="raw", value_serializer="raw")
    groups = app.Table(
        "dispatch-groups",
        partitions=partitions,
        help="dedup and grouping state per vehicle, camera and violation type",
    )
    counters = app.Table("camera-counters", partitions=partitions, help="outcomes per camera")
    metrics = DispatcherMetrics.create(registry)
    instrument(app, registry)
    handler = BatchHandler(
        dispatcher=Dispatcher(config=config, catalogue=settings.catalogue),
        queue=queue,
        metrics=metrics,
        dlq=dlq,
        groups=groups,
        counters=counters,
    )

    # No agent and no stream: the consumer hands the source topic to the intake in batches.
    app.topics.add(source)
    intake = Intake(
        app, max_events=config.batch.max_events, max_wait_s=config.batch.max_wait_ms / 1000
    )
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    consumer.fetch_max_wait_s = config.consumer.fetch_max_wait_s
    consumer.route_batches(settings.topic, intake)

    async def write() -> None:
        try:
            await write_in_order(intake, handler)
        finally:
            await queue.close()

    app.task(write)

    async def prune_state() -> None:
        dropped = await handler.prune()
        if dropped:
            log.info("dropped %d expired dedup/grouping states", dropped)

    app.timer(interval=config.state_prune_interval_s)(prune_state)

    lag = ConsumerLagGauge(registry, group=settings.app_id)

    async def report_lag() -> None:
        # Lag as Kafka's own tools count it: the end of each partition minus the group's
        # committed offset there.
        committed = app.monitor.tp_committed_offsets
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp) if tp.topic == settings.topic else None
            if highwater is not None:
                lags[(tp.topic, tp.partition)] = max(highwater - committed.get(tp, 0), 0)
        lag.update(lags)

    app.timer(interval=LAG_INTERVAL_S)(report_lag)

    return app
