"""The faust app that runs the dispatch core on the ``violations`` topic.

No loss, no duplicates:

- The agent takes events in batches without acking them (``noack_take``). A batch is
  planned by the pure core, its dead letters are produced, its entries are written to the
  control-center queue (retrying with backoff while Redis is away), its state goes to the
  tables' changelogs, and only then are its events acked. faust commits only acked offsets,
  and flushes the producer (changelogs, dead letters) before it commits.
- A crash anywhere before the commit means redelivery. The queue's append and repeat are
  idempotent per violation id, so a redelivered event never creates a second entry.
- While Redis is away the agent holds its one batch; faust stops fetching once the stream
  buffer (``stream_buffer_maxsize``) is full, so memory stays bounded.

Scale-out: run more processes with the same app id; they share the consumer group, and each
table partition follows its source partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import faust
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
from services.dispatcher.executor import PlanExecutor, dead_letter_headers
from services.dispatcher.metrics import DispatcherMetrics, instrument

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DispatcherSettings:
    """Everything a dispatcher process needs, resolved from the CLI and config files."""

    bootstrap_servers: str
    source_partitions: int
    config: DispatchConfig
    catalogue: Catalogue
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
        self._store_state(plan, events)
        # The dead letters must be on the broker before their offsets can be committed.
        await asyncio.gather(*deliveries)

    async def _dead_letter(self, event: EventT[bytes], decision: DeadLetter) -> Awaitable[Any]:
        message = event.message
        self._metrics.dead_lettered.labels(reason=decision.reason.value).inc()
        log.warning(
            "dead-lettering %s[%d]@%d: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            decision.reason.value,
            decision.detail[:200],
        )
        source = f"{message.topic}/{message.partition}/{message.offset}"
        headers = list(dead_letter_headers(decision, source=source))
        delivery: Awaitable[Any] = await self._dlq.send(
            key=message.key, value=message.value or b"", headers=headers
        )
        return delivery

    def _store_state(self, plan: Plan, events: Sequence[EventT[bytes]]) -> None:
        """Write changed state beside its source message: the same partition number."""
        for key, group in plan.groups.items():
            partition = events[plan.group_sources[key]].message.partition
            value = {**group.to_dict(), "partition": partition}
            self._groups.data[key] = value
            self._groups.send_changelog(partition, key, value)
            self.latest_ts_ms = max(self.latest_ts_ms, group.last_ts_ms)
        self._count_per_camera(plan, events)

    def _count_per_camera(self, plan: Plan, events: Sequence[EventT[bytes]]) -> None:
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
        for camera_id, partition in touched.items():
            self._counters.send_changelog(partition, camera_id, self._counters.data[camera_id])

    def prune(self) -> int:
        """Forget groups older than the dedup horizon; returns how many were dropped."""
        store = self._groups.data
        expired = [
            (key, value["partition"])
            for key, value in list(store.items())
            if self._dispatcher.expired(GroupState.from_dict(value), latest_ts_ms=self.latest_ts_ms)
        ]
        for key, partition in expired:
            del store[key]
            # A tombstone, so that compaction drops the key and recovery stays short.
            self._groups.send_changelog(partition, key, None, value_serializer="raw")
        return len(expired)


def build_app(
    settings: DispatcherSettings,
    *,
    queue: ControlCenterQueue,
    registry: CollectorRegistry,
) -> faust.App:
    """Wire topics, tables, the agent, the prune timer and ``/metrics`` into a faust app."""
    config = settings.config
    partitions = settings.source_partitions
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
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
    max_wait_s = config.batch.max_wait_ms / 1000

    @app.agent(source, name="dispatch")
    async def dispatch(stream: faust.StreamT[bytes]) -> None:
        # noack_take lives on the concrete Stream, and yields events although it is
        # annotated as yielding values.
        batches = cast(faust.Stream[bytes], stream).noack_take(
            config.batch.max_events, within=max_wait_s
        )
        try:
            async for batch in batches:
                events = cast(Sequence[EventT[bytes]], batch)
                await handler.handle(events)
                for event in events:
                    await stream.ack(event)
        finally:
            await queue.close()

    async def prune_state() -> None:
        dropped = handler.prune()
        if dropped:
            log.info("dropped %d expired dedup/grouping states", dropped)

    app.timer(interval=config.state_prune_interval_s)(prune_state)

    return app
