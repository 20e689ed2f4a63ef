"""The dispatcher's faust consumer: batch routes, the inline hand-off and the prompt resume."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.transport.drivers import aiokafka
from faust.types import TP, AppT, Message
from mode.services import WaitResults

from services.dispatcher.faust_internals.consumer import (
    PAUSED_FETCH_WAIT_S,
    App,
    Consumer,
    hand_off,
)

# A bound on waits that must end on an event long before it, so a regression fails, not hangs.
HANG_S = 10.0


async def race(*aws: Awaitable[Any]) -> WaitResults:
    """``Service.wait_first`` in short: the first to finish wins, the others are cancelled."""
    futures = [asyncio.ensure_future(aw) for aw in aws]
    done, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    for future in pending:
        future.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    winners = [f for f in futures if f in done]
    return WaitResults(winners, [f.result() for f in winners], False)


async def must_not_race(*aws: Awaitable[Any]) -> WaitResults:
    raise AssertionError("a callback that does not suspend must not be raced")


async def never() -> None:
    await asyncio.Event().wait()


def test_a_callback_that_does_not_suspend_runs_inline() -> None:
    async def scenario() -> None:
        async def callback() -> str:
            return "delivered"

        suspended = never()
        results = await hand_off(callback(), suspended, race=must_not_race)
        assert results.results == ["delivered"]
        assert suspended.cr_frame is None  # closed, so never reported as "never awaited"

    asyncio.run(scenario())


def test_a_callback_that_suspends_is_finished_in_the_race() -> None:
    async def scenario() -> None:
        room = asyncio.get_running_loop().create_future()
        steps = []

        async def callback() -> str:
            steps.append("before")
            await room
            steps.append("after")
            return "delivered"

        handing = asyncio.ensure_future(hand_off(callback(), never(), race=race))
        await asyncio.sleep(0)
        assert steps == ["before"]
        room.set_result(None)
        results = await asyncio.wait_for(handing, HANG_S)
        assert results.results == ["delivered"]
        assert steps == ["before", "after"]

    asyncio.run(scenario())


def test_a_suspended_flow_abandons_a_stuck_callback() -> None:
    async def scenario() -> None:
        flow_suspended = asyncio.Event()
        abandoned = []

        async def callback() -> None:
            try:
                await never()
            finally:
                abandoned.append(True)

        async def suspend() -> str:
            await flow_suspended.wait()
            return "suspended"

        handing = asyncio.ensure_future(hand_off(callback(), suspend(), race=race))
        await asyncio.sleep(0)
        flow_suspended.set()
        results = await asyncio.wait_for(handing, HANG_S)
        assert results.results == ["suspended"]
        assert abandoned == [True]  # the cancellation reached the callback's own frame

    asyncio.run(scenario())


def test_an_error_after_suspending_propagates() -> None:
    async def scenario() -> None:
        room = asyncio.get_running_loop().create_future()

        async def callback() -> None:
            await room
            raise ValueError("undecodable")

        handing = asyncio.ensure_future(hand_off(callback(), never(), race=race))
        await asyncio.sleep(0)
        room.set_result(None)
        with pytest.raises(ValueError, match="undecodable"):
            await asyncio.wait_for(handing, HANG_S)

    asyncio.run(scenario())


@contextlib.contextmanager
def unstarted_consumer() -> Iterator[Consumer]:
    # Building the consumer connects to nothing; the broker address is never dialled.
    app = App("unit-transport", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    try:
        yield consumer
    finally:
        # Made for the fetcher thread, which a consumer that is never started never runs.
        consumer._thread.thread_loop.close()


def test_with_every_partition_paused_a_drained_buffer_resumes_fetching() -> None:
    async def scenario() -> None:
        with unstarted_consumer() as consumer:
            tp = TP("violations", 0)
            consumer._active_partitions = {tp}
            consumer.on_buffer_full(tp)
            # faust would sleep out the whole timeout here; this one waits for the buffer.
            fetching = asyncio.ensure_future(consumer._wait_next_records(timeout=3600))
            await asyncio.sleep(0)
            assert not fetching.done()
            consumer.on_buffer_drop(tp)
            records, _ = await asyncio.wait_for(fetching, HANG_S)
            assert records == {}
            assert consumer._get_active_partitions() == {tp}

    asyncio.run(scenario())


def test_with_some_partitions_paused_fetches_wait_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        with unstarted_consumer() as consumer:
            waits = []

            async def fetch(
                self: aiokafka.Consumer, timeout: float
            ) -> tuple[dict[TP, Any], set[TP]]:
                waits.append(timeout)
                return {}, set()

            monkeypatch.setattr(aiokafka.Consumer, "_wait_next_records", fetch)
            paused, running = TP("violations", 0), TP("violations", 1)
            consumer._active_partitions = {paused, running}
            await consumer._wait_next_records(timeout=1.0)
            consumer.on_buffer_full(paused)
            await consumer._wait_next_records(timeout=1.0)
            assert waits == [1.0, PAUSED_FETCH_WAIT_S]

    asyncio.run(scenario())


async def subscribe(app: AppT, topic: str) -> None:
    """Subscribe ``app`` to ``topic`` as a started app does: faust then acks its messages."""
    app.topics.add(app.topic(topic))
    await app.topics._update_indices()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Record:
    """What faust's aiokafka ``_to_message`` reads of a fetched ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    timestamp: int = 0
    timestamp_type: int = 0
    headers: Sequence[tuple[str, bytes]] = ()
    key: bytes | None = None
    value: bytes = b"{}"
    checksum: int | None = None
    serialized_key_size: int = 0
    serialized_value_size: int = 2


def records(tp: TP, *offsets: int) -> list[Record]:
    return [Record(tp.topic, tp.partition, offset) for offset in offsets]


@dataclass
class RecordingSink:
    delivered: list[tuple[TP, list[int]]] = field(default_factory=list)

    def deliver(self, tp: TP, messages: Sequence[Message]) -> None:
        self.delivered.append((tp, [m.offset for m in messages]))


SOURCE_0, SOURCE_1 = TP("violations", 0), TP("violations", 1)
OTHER = TP("other", 0)


@contextlib.asynccontextmanager
async def routing(
    monkeypatch: pytest.MonkeyPatch,
    fetched: dict[TP, list[Record]],
    *,
    active: set[TP] | None = None,
) -> AsyncIterator[tuple[Consumer, RecordingSink]]:
    """A consumer that routes the source topic to a sink, and fetches ``fetched`` once."""
    with unstarted_consumer() as consumer:
        await subscribe(consumer.app, SOURCE_0.topic)
        sink = RecordingSink()
        consumer.route_batches(SOURCE_0.topic, sink)

        async def fetch(timeout: float) -> tuple[dict[TP, list[Record]], set[TP] | None]:
            return fetched, active

        monkeypatch.setattr(consumer, "_wait_next_records", fetch)
        # The end offset comes from the fetcher's client, which an unstarted consumer lacks.
        monkeypatch.setattr(consumer, "highwater", lambda tp: 0)
        yield consumer, sink


async def route(consumer: Consumer) -> None:
    await asyncio.wait_for(consumer._fetch_and_route(), HANG_S)


def test_a_routed_topic_reaches_its_sink_as_one_batch_per_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        fetched = {SOURCE_0: records(SOURCE_0, 3, 4, 5), SOURCE_1: records(SOURCE_1, 0)}
        async with routing(monkeypatch, fetched) as (consumer, sink):
            ends = []
            monkeypatch.setattr(
                consumer.app.monitor, "track_tp_end_offset", lambda tp, offset: ends.append(tp)
            )
            await route(consumer)
            assert sink.delivered == [(SOURCE_0, [3, 4, 5]), (SOURCE_1, [0])]
            assert consumer._read_offset[SOURCE_0] == 5
            assert consumer._read_offset[SOURCE_1] == 0
            # The consumer lag stays measured, once a partition rather than once a message.
            assert ends == [SOURCE_0, SOURCE_1]

    asyncio.run(scenario())


def test_records_below_the_read_offset_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with routing(monkeypatch, {SOURCE_0: records(SOURCE_0, 3, 4, 5, 6)}) as (
            consumer,
            sink,
        ):
            # After a seek the read offset is the committed offset, the next one to read.
            consumer._read_offset[SOURCE_0] = 5
            await route(consumer)
            assert sink.delivered == [(SOURCE_0, [5, 6])]
            assert consumer._read_offset[SOURCE_0] == 6

    asyncio.run(scenario())


def test_a_fetch_of_records_already_read_delivers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with routing(monkeypatch, {SOURCE_0: records(SOURCE_0, 3, 4)}) as (consumer, sink):
            consumer._read_offset[SOURCE_0] = 7
            await route(consumer)
            assert sink.delivered == []  # an empty batch is never delivered
            assert consumer._read_offset[SOURCE_0] == 7

    asyncio.run(scenario())


def gap(consumer: Consumer, tp: TP) -> list[int]:
    return sorted(o for interval in consumer._gap[tp] for o in range(interval.begin, interval.end))


@pytest.mark.parametrize(
    ("read_offset", "offsets", "skipped"),
    [
        (None, (5, 8), [6, 7]),  # within a batch
        (5, (8, 9), [6, 7]),  # from the last batch read
        (5, (6, 7), []),
    ],
)
def test_offsets_skipped_between_records_are_a_gap(
    monkeypatch: pytest.MonkeyPatch,
    read_offset: int | None,
    offsets: tuple[int, ...],
    skipped: list[int],
) -> None:
    async def scenario() -> None:
        async with routing(monkeypatch, {SOURCE_0: records(SOURCE_0, *offsets)}) as (
            consumer,
            sink,
        ):
            consumer._read_offset[SOURCE_0] = read_offset
            await route(consumer)
            # A gap is never acked, so faust counts it as acked when it works out the commit;
            # the records on either side are not in it.
            assert gap(consumer, SOURCE_0) == skipped
            assert sink.delivered == [(SOURCE_0, list(offsets))]

    asyncio.run(scenario())


def test_a_gap_right_after_offset_0_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with routing(monkeypatch, {SOURCE_0: records(SOURCE_0, 0, 3)}) as (consumer, _):
            await route(consumer)
            assert gap(consumer, SOURCE_0) == [1, 2]

    asyncio.run(scenario())


def test_a_stopped_flow_delivers_nothing_and_seeks_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with routing(monkeypatch, {SOURCE_0: records(SOURCE_0, 3, 4)}) as (consumer, sink):
            seeks = []

            async def perform_seek() -> None:
                seeks.append(True)

            monkeypatch.setattr(consumer, "perform_seek", perform_seek)
            consumer.stop_flow()
            await route(consumer)
            assert sink.delivered == []
            # What was fetched is read again, from the committed offsets.
            assert seeks == [True]
            assert consumer._read_offset[SOURCE_0] is None

    asyncio.run(scenario())


def test_a_new_generation_stops_routing_the_rest_of_a_fetch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        fetched = {SOURCE_0: records(SOURCE_0, 3), SOURCE_1: records(SOURCE_1, 7)}
        async with routing(monkeypatch, fetched) as (consumer, sink):
            deliver = sink.deliver

            def rebalanced_on_deliver(tp: TP, messages: Sequence[Message]) -> None:
                deliver(tp, messages)
                consumer.app.consumer_generation_id += 1

            monkeypatch.setattr(sink, "deliver", rebalanced_on_deliver)
            await route(consumer)
            # The rest was fetched for the old assignment; the new one reads it again.
            assert sink.delivered == [(SOURCE_0, [3])]
            assert consumer._read_offset[SOURCE_1] is None

    asyncio.run(scenario())


def test_only_active_or_paused_partitions_are_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        fetched = {
            SOURCE_0: records(SOURCE_0, 1),
            SOURCE_1: records(SOURCE_1, 2),
            TP("violations", 2): records(TP("violations", 2), 3),
        }
        async with routing(monkeypatch, fetched, active={SOURCE_0}) as (consumer, sink):
            # Fetched before it paused: faust delivers these too.
            consumer._buffered_partitions.add(SOURCE_1)
            await route(consumer)
            assert sink.delivered == [(SOURCE_0, [1]), (SOURCE_1, [2])]

    asyncio.run(scenario())


def test_topics_not_routed_go_through_the_callback_one_message_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        fetched = {OTHER: records(OTHER, 4, 5), SOURCE_0: records(SOURCE_0, 9)}
        async with routing(monkeypatch, fetched) as (consumer, sink):
            called = []

            async def callback(message: Message) -> None:
                called.append((message.tp, message.offset))

            monkeypatch.setattr(consumer, "callback", callback)
            await route(consumer)
            assert called == [(OTHER, 4), (OTHER, 5)]
            assert consumer._read_offset[OTHER] == 5
            assert sink.delivered == [(SOURCE_0, [9])]

    asyncio.run(scenario())


def test_the_worker_consumer_fetches_with_the_configured_wait() -> None:
    # faust passes aiokafka a fixed 1.5 s; the thread must hand on the consumer's own wait.
    async def scenario() -> None:
        with unstarted_consumer() as consumer:
            consumer.fetch_max_wait_s = 0.05
            aiokafka_consumer = consumer._thread._create_worker_consumer(consumer.transport)
            assert aiokafka_consumer._fetch_max_wait_ms == 50
            await aiokafka_consumer.stop()

    asyncio.run(scenario())
