"""The faust app that runs the dispatch core on the ``violations`` topic.

No loss, no duplicates:

- faust's consumer hands the source topic's messages, a fetched batch at a time, to the
  :class:`~services.dispatcher.intake.Intake`, which tracks them unacked. One writer task
  handles them batch after batch, in order, with the dispatch steps that the embedded loop
  runs too (:mod:`~services.dispatcher.steps`): here the state store is two faust tables and
  dead letters go to the dead-letter topic. A batch is planned by the pure core, its dead
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

import logging
from collections.abc import Awaitable, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import Message, TableT
from prometheus_client import CollectorRegistry

from services.common.bus import Headers
from services.common.config.catalogue import Catalogue
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC
from services.common.queue import ControlCenterQueue
from services.dispatcher.config import DispatchConfig
from services.dispatcher.core import Dispatcher
from services.dispatcher.executor import WriteAbandonedError
from services.dispatcher.faust_internals.changelog import send_changelog
from services.dispatcher.faust_internals.consumer import App, Consumer
from services.dispatcher.intake import Intake
from services.dispatcher.metrics import DispatcherMetrics, instrument
from services.dispatcher.steps import DispatchSteps, SourceMessage, StateChange
from services.dispatcher.writer import write_in_order

log = logging.getLogger(__name__)


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


class FaustTables:
    """The state store on Kafka: faust tables, changelogged a record batch at a time."""

    def __init__(self, *, groups: TableT[str, Any], counters: TableT[str, Any]) -> None:
        self._groups = groups
        self._counters = counters

    @property
    def groups(self) -> MutableMapping[str, Any]:
        return self._groups.data

    @property
    def counters(self) -> MutableMapping[str, Any]:
        return self._counters.data

    async def persist(
        self, *, groups: Sequence[StateChange], counters: Sequence[StateChange]
    ) -> list[Awaitable[Any]]:
        return [
            *await send_changelog(self._groups, groups),
            *await send_changelog(self._counters, counters),
        ]


class FaustDeadLetters:
    """Dead letters on Kafka: faust's producer, on the dead-letter topic."""

    def __init__(self, topic: faust.TopicT) -> None:
        self._topic = topic

    async def send(self, message: SourceMessage, *, headers: Headers) -> Awaitable[Any]:
        delivery: Awaitable[Any] = await self._topic.send(
            key=message.key, value=message.value or b"", headers=list(headers)
        )
        return delivery


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
    steps: DispatchSteps[Message] = DispatchSteps(
        dispatcher=Dispatcher(config=config, catalogue=settings.catalogue),
        queue=queue,
        metrics=metrics,
        store=FaustTables(groups=groups, counters=counters),
        dead_letters=FaustDeadLetters(dlq),
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

    # A stop must not wait for Redis: the writer gives up, and what it held is read again
    # after the restart.
    app.on_stopping(steps.executor.stop)

    async def write() -> None:
        try:
            await write_in_order(intake, steps)
        except WriteAbandonedError as exc:
            log.warning("stopped with a batch unwritten, to be delivered again: %s", exc)
            intake.abandon()
        finally:
            await queue.close()

    app.task(write)

    async def prune_state() -> None:
        await steps.prune()

    app.timer(interval=config.state_prune_interval_s)(prune_state)

    return app
