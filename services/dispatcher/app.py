"""The faust app that runs the dispatch core on the ``violations`` topic.

No loss, no duplicates:

- The agent takes events without acking them and hands them to one writer task, which
  handles them batch after batch, in order. A batch is planned by the pure core, its dead
  letters are produced, its entries are written to the control-center queue in one call
  (retrying with backoff while Redis is away), its state is sent to the tables' changelogs,
  and only once the dead letters and the state are on the broker are its events acked.
  faust commits only acked offsets.
- A crash anywhere before the commit means redelivery. The queue's append and repeat are
  idempotent per violation id, so a redelivered event never creates a second entry.
- While the writer is busy the agent keeps taking events, so fetching and writing overlap
  and batches grow with the load. At most ``batch.max_events`` wait beside the batch being
  written; then the agent waits, faust stops fetching once the stream buffer
  (``stream_buffer_maxsize``) is full, and memory stays bounded while Redis is away.

Scale-out: run more processes with the same app id; they share the consumer group, and each
table partition follows its source partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import faust
from faust.tables.base import Collection
from faust.types import EventT, TableT
from prometheus_client import CollectorRegistry

from services.common.config.catalogue import Catalogue
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC
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
from services.dispatcher.metrics import DispatcherMetrics, instrument
from services.dispatcher.transport import App

log = logging.getLogger(__name__)

T = TypeVar("T")


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
    """The core's read-only view of the groups table (JSON dicts in faust's store)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getitem__(self, key: str) -> GroupState:
        return GroupState.from_dict(self._store[key])

    def get(self, key: str, default: Any = None) -> Any:
        # Most keys are new: Mapping.get would raise and catch a KeyError for each of them.
        value = self._store.get(key)
        return default if value is None else GroupState.from_dict(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)


class BatchHandler:
    """Carries out one batch's plan: dead letters, queue writes, table state, metrics."""

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

    async def handle(self, events: Sequence[EventT[bytes]]) -> None:
        """Process a batch to the point where all of its events may be acked."""
        raws = [event.message.value or b"" for event in events]
        self._metrics.events.inc(len(raws))
        plan = self._dispatcher.plan(
            raws, state=GroupTableView(self._groups.data), now_ms=int(time.time() * 1000)
        )
        deliveries = [
            await self._dead_letter(event, decision)
            for event, decision in zip(events, plan.decisions, strict=True)
            if isinstance(decision, DeadLetter)
        ]
        await self._executor.write_entries(plan)
        await self._executor.write_repeats(plan)
        async with self._state_lock:
            deliveries += await self._store_state(plan, events)
        # The dead letters and the state must be on the broker before the offsets that
        # produced them can be committed.
        await asyncio.gather(*deliveries)

    async def _dead_letter(self, event: EventT[bytes], decision: DeadLetter) -> Awaitable[Any]:
        message = event.message
        headers = self._executor.dead_letter(
            decision, topic=message.topic, partition=message.partition, offset=message.offset
        )
        delivery: Awaitable[Any] = await self._dlq.send(
            key=message.key, value=message.value or b"", headers=list(headers)
        )
        return delivery

    async def _store_state(
        self, plan: Plan, events: Sequence[EventT[bytes]]
    ) -> list[Awaitable[Any]]:
        """Write changed state beside its source message: the same partition number.

        Returns the changelog deliveries.
        """
        deliveries = []
        for key, group in plan.groups.items():
            partition = events[plan.group_sources[key]].message.partition
            value = {**group.to_dict(), "partition": partition}
            self._groups.data[key] = value
            deliveries.append(await send_changelog(self._groups, partition, key, value))
            self.latest_ts_ms = max(self.latest_ts_ms, group.last_ts_ms)
        for camera_id, partition in self._count_per_camera(plan, events).items():
            counts = self._counters.data[camera_id]
            deliveries.append(await send_changelog(self._counters, partition, camera_id, counts))
        return deliveries

    def _count_per_camera(self, plan: Plan, events: Sequence[EventT[bytes]]) -> dict[str, int]:
        """Count the batch's outcomes per camera; returns the cameras touched, by partition."""
        touched: dict[str, int] = {}
        for event, decision in zip(events, plan.decisions, strict=True):
            if isinstance(decision, DeadLetter):
                continue
            counts = self._counters.data.get(decision.camera_id) or {}
            outcome = type(decision).__name__.lower()
            self._counters.data[decision.camera_id] = {
                **counts,
                outcome: counts.get(outcome, 0) + 1,
            }
            touched[decision.camera_id] = event.message.partition
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
            for key, partition in expired:
                del store[key]
                # A tombstone, so that compaction drops the key and recovery stays short.
                await send_changelog(self._groups, partition, key, None)
        return len(expired)


async def send_changelog(
    table: TableT[str, Any], partition: int, key: str, value: Any
) -> Awaitable[Any]:
    """Send one change of ``table`` straight to the producer; returns its delivery.

    ``Table.send_changelog`` goes through faust's send buffer, a task and the sensors for
    every record, which costs as much as the rest of an event's path. The record is the same
    (the table's serializers, ``None`` as a tombstone), and faust's commit flushes this
    producer as it does the buffer.
    """
    # The concrete table (faust's Collection) holds the serializers; TableT does not show them.
    serializers = cast(Collection, table)
    topic = table.changelog_topic
    key_bytes, _ = topic.prepare_key(key, serializers.key_serializer)
    value_bytes = None
    if value is not None:
        value_bytes, _ = topic.prepare_value(value, serializers.value_serializer)
    delivery: Awaitable[Any] = await table.app.producer.send(
        topic.get_topic_name(),
        key_bytes,
        value_bytes,
        partition=partition,
        timestamp=None,
        headers=None,
    )
    return delivery


class PendingBatches:
    """Events taken from the stream and not yet written: the hand-over to the writer.

    The agent adds events one at a time as faust delivers them; the writer, whenever it is
    free, takes everything that waits (at most ``max_events``, after waiting at most
    ``max_wait_s`` for a batch to fill). Fetching and writing overlap, and a batch grows with
    the load: a few events when idle, ``max_events`` under a backlog.
    Once ``max_events`` wait, the agent stops taking events, faust's stream buffer fills and
    the consumer pauses fetching, so memory stays bounded while Redis is away.
    """

    def __init__(self, *, max_events: int, max_wait_s: float) -> None:
        self._events: list[EventT[bytes]] = []
        self._max_events = max_events
        self._max_wait_s = max_wait_s
        self._waiting = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def add(self, event: EventT[bytes], *, writer: asyncio.Future[None]) -> None:
        """Queue ``event``; waits while the buffer is full. Raises what stopped the writer."""
        if writer.done():
            writer.result()
            raise RuntimeError("the dispatch writer stopped")
        self._events.append(event)
        self._waiting.set()
        if len(self._events) >= self._max_events:
            self._full.set()
            self._room.clear()
            room = asyncio.ensure_future(self._room.wait())
            waiters: set[asyncio.Future[Any]] = {room, writer}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                room.cancel()

    async def take(self) -> list[EventT[bytes]]:
        """The oldest waiting events, at most ``max_events``.

        Waits for a first event, then at most ``max_wait_s`` for the batch to fill.
        """
        await self._waiting.wait()
        if len(self._events) < self._max_events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=self._max_wait_s)
        batch = self._events[: self._max_events]
        del self._events[: self._max_events]
        if not self._events:
            self._waiting.clear()
        if len(self._events) < self._max_events:
            self._full.clear()
            self._room.set()
        return batch


async def write_in_order(
    pending: PendingBatches, handler: BatchHandler, stream: faust.StreamT[bytes]
) -> None:
    """Handle batch after batch, acking each one's events only once it is handled."""
    while True:
        events = await pending.take()
        await handler.handle(events)
        for event in events:
            await stream.ack(event)


def build_app(
    settings: DispatcherSettings,
    *,
    queue: ControlCenterQueue,
    registry: CollectorRegistry,
) -> faust.App:
    """Wire topics, tables, the agent, the prune timer and ``/metrics`` into a faust app."""
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
        # Bounds memory while Redis is away: fetching pauses once this many wait per partition.
        stream_buffer_maxsize=2 * config.batch.max_events,
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

    @app.agent(source, name="dispatch")
    async def dispatch(stream: faust.StreamT[bytes]) -> None:
        # Acks are ours: an event is acked only once its batch is written.
        stream.enable_acks = False
        pending = PendingBatches(
            max_events=config.batch.max_events, max_wait_s=config.batch.max_wait_ms / 1000
        )
        writer = asyncio.ensure_future(write_in_order(pending, handler, stream))
        try:
            async for event in stream.events():
                await pending.add(event, writer=writer)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await queue.close()

    async def prune_state() -> None:
        dropped = await handler.prune()
        if dropped:
            log.info("dropped %d expired dedup/grouping states", dropped)

    app.timer(interval=config.state_prune_interval_s)(prune_state)

    return app
