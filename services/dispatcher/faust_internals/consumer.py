"""faust's Kafka transport, with four changes to its consumer loop and a bounded stop.

All keep faust's semantics (flow control during rebalances, paused partitions while a
buffer is full, commits only up to acked offsets); they remove waiting and work that those
semantics do not need.

- **Batch routes.** faust hands every fetched message on one by one: a conductor callback
  per message, an event, a stream buffer, a stream iterator and sensors per message, half of
  what the dispatcher spent per event. A topic routed to a :class:`BatchSink` gets each
  partition's fetched messages as one list instead. What faust does per message on the way
  (read offsets, gaps, the flow-control and generation checks) is done here per batch; the
  sink tracks, acks and counts the messages itself.
- **Short fetch waits.** faust fixes aiokafka's ``fetch_max_wait_ms`` at 1,500 ms: how long
  the broker holds a fetch for partitions that have no new data. aiokafka sends one fetch
  at a time to a broker, so while such a fetch waits, partitions that do have data (or
  were just drained) cannot be fetched either. With faust's value a worker draining a
  backlog stalled for up to a second and a half at a time; the wait is a setting here.
- **Prompt resume.** When a stream buffer fills, faust stops fetching the partitions that
  feed it and resumes each once the buffer has drained to half. But its fetch loop then
  waits a whole second: ``getmany`` on the partitions still active, which may hold no
  data, or ``sleep(1)`` when none is. Under a load near the worker's capacity every full
  buffer became a one-second stall of the whole pipeline (p99 latency of seconds at
  2,000 events/s). This consumer polls briefly while any partition is paused, and with
  none active wakes as soon as one resumes.
- **Inline hand-off.** faust passes every fetched message to the conductor as
  ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an
  ``asyncio.wait`` a message, so that a rebalance can abandon a callback that is stuck.
  A callback almost never suspends (it only does while flow control or a full buffer holds
  it), so this consumer first steps it by hand; only one that suspends is raced against
  ``suspend_flow`` as faust does, from where it suspended.
- **Bounded stop.** A stop waits at most ``CONSUMER_STOP_TIMEOUT_S`` for the consumer
  thread, not mode's 60 s, so that SIGTERM is honoured with the broker down.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any, Protocol, TypeVar, cast

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.consumer import CONSUMER_FETCHING, RecordMap, ensure_TP
from faust.transport.drivers import aiokafka
from faust.types import TP, Message
from mode import Service, ServiceT
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds

T = TypeVar("T")

# How long one fetch may wait while some partitions are paused for a full buffer: short,
# so that a partition that resumes meanwhile is fetched again within this long.
PAUSED_FETCH_WAIT_S = 0.02
# How long a stop waits for the consumer thread (see ConsumerThread).
CONSUMER_STOP_TIMEOUT_S = 5.0


@types.coroutine
def _step_on(coro: Coroutine[Any, Any, T], suspended_on: Any) -> Generator[Any, Any, T]:
    """Go on running ``coro``, stepped by hand until it suspended on ``suspended_on``."""
    pending = suspended_on
    while True:
        try:
            sent = yield pending
        except BaseException as exc:  # cancellation included: the coroutine must see it
            try:
                pending = coro.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                pending = coro.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


async def _resume(coro: Coroutine[Any, Any, T], suspended_on: Any) -> T:
    # An ``async def`` around the generator: mode's ``wait_first`` takes awaitables.
    return await _step_on(coro, suspended_on)


async def hand_off(
    callback: Coroutine[Any, Any, Any],
    suspended: Coroutine[Any, Any, Any],
    *,
    race: Callable[[Awaitable[Any], Awaitable[Any]], Awaitable[WaitResults]],
) -> WaitResults:
    """Run ``callback`` to its end if it never suspends; else ``race`` its rest and ``suspended``.

    ``suspended`` is only awaited in a race: a callback that does not suspend finishes
    before anything else can run, so nothing can have suspended the flow meanwhile.
    """
    try:
        suspended_on = callback.send(None)
    except StopIteration as done:
        suspended.close()  # never started, so never awaited
        return WaitResults([callback], [done.value], False)
    return await race(_resume(callback, suspended_on), suspended)


class BatchSink(Protocol):
    def deliver(self, tp: TP, messages: Sequence[Message]) -> None:
        """Take ``messages``, fetched in offset order from ``tp``; must not block.

        The consumer only delivers while the flow is active and within the generation the
        messages were fetched in. From here on the sink must track them for faust (so that a
        rebalance waits for them) and ack each one it has handled; to bound its memory it
        pauses a partition with ``on_buffer_full`` and resumes it with ``on_buffer_drop``.
        """


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, whose aiokafka consumer waits as briefly as its faust
    consumer says, and which is given up on after ``shutdown_timeout`` when it cannot stop.
    """

    # mode waits 60 s for a service thread to shut down. With the broker gone, aiokafka's
    # fetcher never finishes closing, and SIGTERM took a minute; nothing can be committed
    # then anyway, and what was not committed is delivered again (the queue de-duplicates).
    shutdown_timeout = CONSUMER_STOP_TIMEOUT_S

    def _create_worker_consumer(self, transport: aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Not an argument faust passes on; aiokafka hands it to its fetcher on start.
        consumer._fetch_max_wait_ms = round(cast(Consumer, self.consumer).fetch_max_wait_s * 1000)
        return consumer


class Consumer(aiokafka.Consumer):
    """faust's aiokafka consumer with batch routes, short fetch waits, a prompt resume and
    an inline hand-off."""

    #: How long the broker may hold a fetch for partitions with no new data.
    fetch_max_wait_s = 0.02

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._buffer_drained = asyncio.Event()
        self._batch_sinks: dict[str, BatchSink] = {}

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def route_batches(self, topic: str, sink: BatchSink) -> None:
        """Deliver ``topic``'s messages to ``sink``, a fetched batch per partition at a time."""
        self._batch_sinks[topic] = sink

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        if not self._batch_sinks:
            await super()._drain_messages(fetcher)
            return
        # The stop checks, flag and error handling are faust's own ``_drain_messages``.
        fetcher_stopped = cast(Service, fetcher)._stopped.is_set
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                try:
                    await self._fetch_and_route()
                finally:
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def _fetch_and_route(self) -> None:
        records, active = await self._wait_next_records(timeout=1.0)
        # A fetch that returns at once must still let the rest of the app run.
        await asyncio.sleep(0)
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # As faust's getmany: what was fetched while the flow stopped is dropped, and the
            # partitions are read again from their committed offsets.
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning("exception performing seek when flow not active %r", exc)
            return
        generation_id = self.app.consumer_generation_id
        for fetched_tp, tp_records in records.items():
            # aiokafka's own TopicPartition: the same tuple, but faust asserts its TP type.
            tp = ensure_TP(fetched_tp)
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            messages = await self._unread(tp, tp_records)
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            if not messages:
                continue
            sink = self._batch_sinks.get(tp.topic)
            if sink is None:
                await self._deliver_one_by_one(messages, generation_id)
            else:
                sink.deliver(tp, messages)
                self._read_offset[tp] = messages[-1].offset
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()

    async def _unread(self, tp: TP, records: Sequence[Any]) -> list[Message]:
        """The records not read yet, as messages; offsets skipped between them are gaps.

        A gap (compaction, transaction markers) is never acked, so faust counts it as acked
        when it works out the offset to commit.
        """
        messages: list[Message] = []
        previous = self._read_offset[tp]
        for record in records:
            offset = record.offset
            if previous is not None and offset < previous:
                continue
            # ``is not None``: faust's own loop tests the offset's truth, and misses a gap
            # right after offset 0, which then blocks the partition's commits for good.
            if (
                previous is not None
                and offset - previous > 1
                and self.app.topics.acks_enabled_for(tp.topic)
            ):
                await self._add_gap(tp, previous + 1, offset - 1)
            messages.append(self._to_message(tp, record))
            previous = offset
        return messages

    async def _deliver_one_by_one(self, messages: Sequence[Message], generation_id: int) -> None:
        """faust's own path: the conductor's callback, message after message."""
        for message in messages:
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            self._read_offset[message.tp] = message.offset

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        self._buffer_drained.set()

    async def _wait_next_records(self, timeout: float) -> tuple[RecordMap | None, set[TP] | None]:
        if not self._buffered_partitions or not self.flow_active or self.app.client_only:
            return await super()._wait_next_records(timeout)
        self._buffer_drained.clear()
        if self._get_active_partitions():
            return await super()._wait_next_records(min(timeout, PAUSED_FETCH_WAIT_S))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._buffer_drained.wait(), timeout)
        return {}, set()

    async def wait_first(self, *coros: WaitArgT, timeout: Seconds | None = None) -> WaitResults:
        """As ``Service.wait_first``, with no tasks for a hand-off that does not suspend.

        In faust 0.15.3 the one caller of a consumer's ``wait_first`` is
        ``_drain_messages``, and here ``_deliver_one_by_one``, which does as it does:
        ``wait_first(callback(message), suspend_flow.wait())``.
        """
        if timeout is not None:
            return await super().wait_first(*coros, timeout=timeout)
        if len(coros) != 2 or self.suspend_flow.is_set():
            return await super().wait_first(*coros)
        callback, suspended = coros
        if not isinstance(callback, Coroutine) or not isinstance(suspended, Coroutine):
            return await super().wait_first(*coros)
        return await hand_off(callback, suspended, race=super().wait_first)


class Transport(aiokafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """A ``faust.App`` whose Kafka consumer is :class:`Consumer`, and which says when it
    starts to stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_stopping: list[Callable[[], None]] = []

    def on_stopping(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` as soon as the app starts to stop.

        faust's ``on_before_shutdown`` comes too late for a writer that waits for Redis:
        before it, the app waits for every message handed out to be acked.
        """
        self._on_stopping.append(callback)

    async def on_stop(self) -> None:
        for callback in self._on_stopping:
            callback()
        await super().on_stop()

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
