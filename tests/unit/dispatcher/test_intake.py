"""The dispatcher's intake: batches, tracking and acks, bounded memory, rebalances, metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import faust
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage
from prometheus_client import CollectorRegistry

from services.dispatcher.faust_internals.consumer import Consumer
from services.dispatcher.faust_internals.monitor import BatchMonitor
from services.dispatcher.intake import PAUSE_AT_BATCHES, RESUME_AT_BATCHES, Intake
from services.dispatcher.metrics import instrument
from tests.unit.dispatcher.test_faust_consumer import HANG_S, subscribe, unstarted_consumer

TOPIC = "violations"
TP0 = TP(TOPIC, 0)
TP1 = TP(TOPIC, 1)
# A wait for a batch to fill that no test sits out: a take that returns did not wait it.
NEVER_S = 3600.0


@contextlib.asynccontextmanager
async def intake_on(
    *, max_events: int, max_wait_s: float = NEVER_S
) -> AsyncIterator[tuple[Intake, Consumer, CollectorRegistry]]:
    """An intake on an unstarted app, wired as the dispatcher wires it."""
    with unstarted_consumer() as consumer:
        app = consumer.app
        assert isinstance(app, faust.App)
        registry = CollectorRegistry()
        instrument(app, registry)
        # faust stops tracking an acked message only for a topic it acks: one it subscribes to.
        await subscribe(app, TOPIC)
        consumer._active_partitions = {TP0, TP1}
        yield Intake(app, max_events=max_events, max_wait_s=max_wait_s), consumer, registry


def messages(consumer: Consumer, tp: TP, offsets: Iterable[int]) -> list[ConsumerMessage]:
    return [
        ConsumerMessage(
            tp.topic,
            tp.partition,
            offset,
            0.0,
            0,
            [],
            None,
            b"{}",
            None,
            0,
            2,
            tp,
            generation_id=consumer.app.consumer_generation_id,
        )
        for offset in offsets
    ]


async def taken(intake: Intake) -> list[Message]:
    return await asyncio.wait_for(intake.take(), HANG_S)


async def settle() -> None:
    """Let every task that can run, run: a take that has not returned by then is waiting."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_takes_return_delivered_messages_in_order_at_most_max_events_each() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=3, max_wait_s=0.01) as (intake, consumer, _):
            first, second = messages(consumer, TP0, range(4)), messages(consumer, TP1, [7])
            intake.deliver(TP0, first)
            intake.deliver(TP1, second)
            assert len(intake) == 5
            # The first take finds a full batch; the second, two short, sits out max_wait_s.
            assert await taken(intake) == first[:3]
            assert await taken(intake) == first[3:] + second
            assert len(intake) == 0

    asyncio.run(scenario())


def test_take_waits_for_a_first_message() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=3, max_wait_s=0.01) as (intake, consumer, _):
            taking = asyncio.ensure_future(intake.take())
            await settle()
            assert not taking.done()
            delivered = messages(consumer, TP0, [0])
            intake.deliver(TP0, delivered)
            assert await asyncio.wait_for(taking, HANG_S) == delivered

    asyncio.run(scenario())


def test_take_returns_a_partial_batch_after_max_wait_s() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=100, max_wait_s=0.01) as (intake, consumer, _):
            delivered = messages(consumer, TP0, range(2))
            intake.deliver(TP0, delivered)
            assert await taken(intake) == delivered

    asyncio.run(scenario())


def test_take_returns_as_soon_as_max_events_wait() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=3) as (intake, consumer, _):
            taking = asyncio.ensure_future(intake.take())
            intake.deliver(TP0, messages(consumer, TP0, range(2)))
            await settle()
            assert not taking.done()  # two of three: it waits for the batch to fill
            intake.deliver(TP1, messages(consumer, TP1, range(2)))
            batch = await asyncio.wait_for(taking, HANG_S)
            assert [(m.partition, m.offset) for m in batch] == [(0, 0), (0, 1), (1, 0)]
            assert len(intake) == 1

    asyncio.run(scenario())


def test_delivered_messages_are_unacked_until_done() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=2) as (intake, consumer, _):
            delivered = messages(consumer, TP0, range(3))
            intake.deliver(TP0, delivered)
            # Tracked, so a rebalance or a clean stop waits for them before it commits.
            assert set(consumer.unacked) == set(delivered)
            batch = await taken(intake)
            assert set(consumer.unacked) == set(delivered)  # taken is not handled
            intake.done(batch)
            assert all(m.acked for m in batch)
            assert set(consumer.unacked) == {delivered[2]}
            assert not delivered[2].acked

    asyncio.run(scenario())


def test_a_partition_pauses_at_the_pause_bound_and_resumes_at_the_resume_bound() -> None:
    async def scenario() -> None:
        max_events = 2
        pause_at, resume_at = PAUSE_AT_BATCHES * max_events, RESUME_AT_BATCHES * max_events
        async with intake_on(max_events=max_events) as (intake, consumer, _):
            intake.deliver(TP0, messages(consumer, TP0, range(pause_at - 1)))
            assert consumer._get_active_partitions() == {TP0, TP1}
            intake.deliver(TP1, messages(consumer, TP1, range(1)))
            # Only the partition that delivered past the bound stops fetching.
            assert consumer._get_active_partitions() == {TP0}
            assert consumer._buffered_partitions == {TP1}
            while len(intake) - max_events > resume_at:
                await taken(intake)
                assert consumer._buffered_partitions == {TP1}  # still above the resume bound
            await taken(intake)
            assert len(intake) == resume_at
            assert consumer._get_active_partitions() == {TP0, TP1}
            assert consumer._buffered_partitions == set()

    asyncio.run(scenario())


def test_clearing_a_suspended_flow_drops_and_untracks_what_waits() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=1) as (intake, consumer, _):
            delivered = messages(consumer, TP0, range(PAUSE_AT_BATCHES))
            intake.deliver(TP0, delivered)
            assert consumer._buffered_partitions == {TP0}
            consumer.app.flow_control.suspend()
            intake.clear()
            assert len(intake) == 0
            # Untracked, not acked: faust must read them again after the rebalance.
            assert set(consumer.unacked) == set()
            assert not any(m.acked for m in delivered)
            assert consumer._buffered_partitions == set()
            assert TP0 in consumer._get_active_partitions()

    asyncio.run(scenario())


def test_clearing_an_active_flow_keeps_what_waits() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=3, max_wait_s=0.01) as (intake, consumer, _):
            delivered = messages(consumer, TP0, range(2))
            intake.deliver(TP0, delivered)
            # faust clears again on resume, after seeking back: these were fetched from there.
            consumer.app.flow_control.resume()
            assert len(intake) == 2
            assert set(consumer.unacked) == set(delivered)
            assert await taken(intake) == delivered

    asyncio.run(scenario())


def test_flow_control_clears_the_intake() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=3) as (intake, consumer, _):
            intake.deliver(TP0, messages(consumer, TP0, range(2)))
            flow_control = consumer.app.flow_control
            flow_control.suspend()
            flow_control.clear()  # what faust calls on a rebalance; it reaches the intake
            assert len(intake) == 0
            assert set(consumer.unacked) == set()

    asyncio.run(scenario())


def test_a_take_after_a_clear_waits_for_new_messages() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=2, max_wait_s=0.01) as (intake, consumer, _):
            intake.deliver(TP0, messages(consumer, TP0, range(3)))
            consumer.app.flow_control.suspend()
            consumer.app.flow_control.clear()
            taking = asyncio.ensure_future(intake.take())
            await settle()
            assert not taking.done()
            consumer.app.flow_control.resume()
            delivered = messages(consumer, TP0, [9])
            intake.deliver(TP0, delivered)
            assert await asyncio.wait_for(taking, HANG_S) == delivered

    asyncio.run(scenario())


def test_messages_of_an_older_generation_are_dropped_when_taken() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=3, max_wait_s=0.01) as (intake, consumer, _):
            app = consumer.app
            stale = messages(consumer, TP0, range(2))
            intake.deliver(TP0, stale)
            app.consumer_generation_id += 1
            current = messages(consumer, TP1, [5])
            intake.deliver(TP1, current)
            assert await taken(intake) == current
            assert set(consumer.unacked) == set(current)
            assert not any(m.acked for m in stale)

    asyncio.run(scenario())


def test_a_take_of_only_older_generations_waits_for_current_messages() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=2, max_wait_s=0.01) as (intake, consumer, _):
            intake.deliver(TP0, messages(consumer, TP0, range(2)))
            consumer.app.consumer_generation_id += 1
            taking = asyncio.ensure_future(intake.take())
            await settle()
            assert not taking.done()  # an empty batch is never returned
            current = messages(consumer, TP0, [0])
            intake.deliver(TP0, current)
            assert await asyncio.wait_for(taking, HANG_S) == current

    asyncio.run(scenario())


def test_the_monitor_counts_messages_by_batch() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=2) as (intake, consumer, registry):
            monitor = consumer.app.monitor
            assert isinstance(monitor, BatchMonitor)

            def sample(name: str, **labels: str) -> float | None:
                return registry.get_sample_value(f"citybrain_faust_{name}", labels)

            intake.deliver(TP0, messages(consumer, TP0, range(10, 13)))
            intake.deliver(TP1, messages(consumer, TP1, [4]))
            assert monitor.messages_received_total == 4
            assert monitor.messages_active == 4
            assert monitor.messages_received_by_topic[TOPIC] == 4
            assert monitor.tp_read_offsets == {TP0: 12, TP1: 4}
            assert sample("messages_received_total") == 4
            assert sample("active_messages") == 4
            assert sample("messages_received_per_topic_total", topic=TOPIC) == 4
            partition_0 = {"topic": TOPIC, "partition": "0"}
            assert sample("messages_received_per_topics_partition", **partition_0) == 12

            intake.done(await taken(intake))
            assert monitor.messages_active == 2
            assert sample("active_messages") == 2
            # Dropped messages are no longer active either; received stays received.
            consumer.app.flow_control.suspend()
            intake.clear()
            assert monitor.messages_active == 0
            assert sample("active_messages") == 0
            assert sample("messages_received_total") == 4

    asyncio.run(scenario())


def test_the_monitor_stops_counting_messages_of_an_older_generation() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=3, max_wait_s=0.01) as (intake, consumer, registry):
            intake.deliver(TP0, messages(consumer, TP0, range(2)))
            consumer.app.consumer_generation_id += 1
            intake.deliver(TP0, messages(consumer, TP0, [0]))
            await taken(intake)
            assert consumer.app.monitor.messages_active == 1
            assert registry.get_sample_value("citybrain_faust_active_messages") == 1

    asyncio.run(scenario())


def test_abandoning_untracks_what_was_taken_and_what_waits_but_not_what_was_acked() -> None:
    async def scenario() -> None:
        async with intake_on(max_events=2, max_wait_s=0.01) as (intake, consumer, _):
            delivered = messages(consumer, TP0, range(2 * PAUSE_AT_BATCHES))
            intake.deliver(TP0, delivered)
            acked = await taken(intake)
            intake.done(acked)
            in_flight = await taken(intake)  # being written when the writer stopped
            intake.abandon()
            assert len(intake) == 0
            # faust's stop waits for nothing, and commits only up to the acked ones: the
            # rest is read again after the restart.
            assert set(consumer.unacked) == set()
            assert all(m.acked for m in acked)
            assert not any(m.acked for m in in_flight)
            assert consumer._buffered_partitions == set()

    asyncio.run(scenario())
