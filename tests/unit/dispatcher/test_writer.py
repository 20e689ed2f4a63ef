"""The dispatch writer: batches planned, written and acked in order, with the steps overlapping.

A real intake on an unstarted app feeds the writer; fake steps record what the writer asks of
them and hand the test futures to settle, so the test decides when a write returns and when a
delivery lands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from faust.types import Message
from faust.types.tuples import ConsumerMessage

from services.dispatcher.core import Decided, Duplicate, GroupState, Plan
from services.dispatcher.faust_internals.consumer import Consumer
from services.dispatcher.writer import write_in_order
from tests.unit.dispatcher.test_faust_consumer import HANG_S
from tests.unit.dispatcher.test_intake import TP0, intake_on, messages, settle

# Every batch is exactly this many messages, so a take never sits out a wait to fill.
BATCH = 2


@dataclass(eq=False)
class Batch:
    """One batch as the steps saw it; the test settles ``returned`` and ``deliveries``."""

    messages: list[Message]
    newer: Mapping[str, GroupState]
    plan: Plan[Message]
    returned: asyncio.Future[None]
    deliveries: list[asyncio.Future[None]]


class Steps:
    """Fake batch steps: ``write`` returns once its batch's ``returned`` is settled."""

    def __init__(self, deliveries: int) -> None:
        self._deliveries = deliveries
        self.batches: list[Batch] = []
        self.events: list[tuple[str, int]] = []

    def plan(
        self, messages: Sequence[Message], *, newer: Mapping[str, GroupState]
    ) -> Plan[Message]:
        index = len(self.batches)
        # Distinct groups per batch, so that ``newer`` shows which batch it came from.
        group = GroupState(f"violation-{index}", index, (f"event-{index}",))
        plan: Plan[Message] = Plan(
            decided=[Decided(m, Duplicate("id", "cam")) for m in messages],
            groups={f"group-{index}": group},
        )
        loop = asyncio.get_running_loop()
        deliveries = [loop.create_future() for _ in range(self._deliveries)]
        self.batches.append(Batch(list(messages), newer, plan, loop.create_future(), deliveries))
        self.events.append(("plan", index))
        return plan

    async def write(self, plan: Plan[Message]) -> list[Awaitable[Any]]:
        index = next(i for i, batch in enumerate(self.batches) if batch.plan is plan)
        batch = self.batches[index]
        assert [decided.message for decided in plan.decided] == batch.messages
        self.events.append(("write", index))
        try:
            await batch.returned
        except asyncio.CancelledError:
            self.events.append(("cancelled", index))
            raise
        self.events.append(("written", index))
        return list(batch.deliveries)


@dataclass
class Writing:
    steps: Steps
    writer: asyncio.Future[None]
    consumer: Consumer
    delivered: list[list[ConsumerMessage]]

    def batch(self, index: int) -> Batch:
        return self.steps.batches[index]

    def acked(self, index: int) -> bool:
        """Whether batch ``index`` is acked; asserts it is wholly one or the other."""
        batch = self.delivered[index]
        unacked = set(self.consumer.unacked)
        if all(m.acked for m in batch) and not unacked & set(batch):
            return True
        assert not any(m.acked for m in batch)
        assert set(batch) <= unacked  # still tracked, so nothing past it is committed
        return False


@contextlib.asynccontextmanager
async def writing(batches: int, *, deliveries: int = 1) -> AsyncIterator[Writing]:
    """The writer running on an intake that holds ``batches`` batches and gets no more."""
    async with intake_on(max_events=BATCH) as (intake, consumer, _):
        delivered = [
            messages(consumer, TP0, range(i * BATCH, (i + 1) * BATCH)) for i in range(batches)
        ]
        for batch in delivered:
            intake.deliver(TP0, batch)
        steps = Steps(deliveries)
        writer = asyncio.ensure_future(write_in_order(intake, steps))
        try:
            await settle()
            yield Writing(steps, writer, consumer, delivered)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)


def test_batches_are_planned_and_written_in_order_and_acked_once_written_and_delivered() -> None:
    async def scenario() -> None:
        async with writing(3, deliveries=2) as w:
            assert [b.messages for b in w.steps.batches] == w.delivered[:2]
            w.batch(0).returned.set_result(None)
            await settle()
            assert not w.acked(0)  # written, but nothing is on the broker yet
            w.batch(0).deliveries[0].set_result(None)
            await settle()
            assert not w.acked(0)  # one delivery of two
            w.batch(0).deliveries[1].set_result(None)
            await settle()
            assert w.acked(0)
            assert not w.acked(1)

            # Deliveries that land before the write returns do not ack it either.
            for delivery in w.batch(1).deliveries:
                delivery.set_result(None)
            await settle()
            assert not w.acked(1)
            w.batch(1).returned.set_result(None)
            await settle()
            assert w.acked(1)
            assert not w.acked(2)

            assert [b.messages for b in w.steps.batches] == w.delivered
            writes = [event for event in w.steps.events if event[0] == "write"]
            assert writes == [("write", 0), ("write", 1), ("write", 2)]

    asyncio.run(scenario())


def test_the_next_batch_is_planned_during_a_write_but_written_only_after_it() -> None:
    async def scenario() -> None:
        async with writing(2) as w:
            events = w.steps.events
            # Planned while batch 0 is still being written; its write waits.
            assert ("plan", 1) in events
            assert ("written", 0) not in events
            assert ("write", 1) not in events
            w.batch(0).returned.set_result(None)
            await settle()
            assert events.index(("written", 0)) < events.index(("write", 1))

    asyncio.run(scenario())


def test_a_batch_is_planned_against_the_groups_of_the_batch_being_written() -> None:
    async def scenario() -> None:
        async with writing(3) as w:
            w.batch(0).returned.set_result(None)
            w.batch(0).deliveries[0].set_result(None)
            await settle()
            assert len(w.steps.batches) == 3
            assert w.batch(0).newer == {}
            # What the table does not hold yet: the batch still being written.
            assert w.batch(1).newer == w.batch(0).plan.groups
            assert w.batch(2).newer == w.batch(1).plan.groups

    asyncio.run(scenario())


def test_at_most_two_batches_wait_for_their_acks() -> None:
    async def scenario() -> None:
        async with writing(3) as w:
            w.batch(0).returned.set_result(None)  # its delivery never lands, for now
            await settle()
            assert ("write", 1) in w.steps.events
            w.batch(1).returned.set_result(None)
            w.batch(1).deliveries[0].set_result(None)
            await settle()
            assert w.acked(1)
            assert len(w.steps.batches) == 3  # planned: only the write waits
            assert ("write", 2) not in w.steps.events
            assert not w.writer.done()

            w.batch(0).deliveries[0].set_result(None)
            await settle()
            assert w.acked(0)
            assert ("write", 2) in w.steps.events

    asyncio.run(scenario())


def test_a_write_that_raises_stops_the_writer_without_a_next_batch() -> None:
    async def scenario() -> None:
        async with writing(1) as w:
            w.batch(0).returned.set_exception(ConnectionError("redis is away"))
            with pytest.raises(ConnectionError, match="redis is away"):
                await asyncio.wait_for(w.writer, HANG_S)
            assert not w.acked(0)

    asyncio.run(scenario())


def test_a_delivery_that_fails_stops_the_writer_without_a_next_batch() -> None:
    async def scenario() -> None:
        async with writing(1) as w:
            w.batch(0).returned.set_result(None)
            await settle()
            assert not w.writer.done()
            w.batch(0).deliveries[0].set_exception(ConnectionError("broker is away"))
            with pytest.raises(ConnectionError, match="broker is away"):
                await asyncio.wait_for(w.writer, HANG_S)
            assert not w.acked(0)

    asyncio.run(scenario())


def test_a_delivery_of_the_older_batch_awaiting_acks_that_fails_stops_the_writer() -> None:
    async def scenario() -> None:
        async with writing(2) as w:
            w.batch(0).returned.set_result(None)
            await settle()
            w.batch(1).returned.set_result(None)
            await settle()
            # Both batches wait for their acks, and no further message comes.
            assert not w.writer.done()
            w.batch(0).deliveries[0].set_exception(ConnectionError("broker is away"))
            with pytest.raises(ConnectionError, match="broker is away"):
                await asyncio.wait_for(w.writer, HANG_S)

    asyncio.run(scenario())


def test_cancelling_the_writer_cancels_what_is_in_flight_and_leaves_no_task() -> None:
    async def scenario() -> None:
        async with writing(2) as w:
            w.batch(0).returned.set_result(None)  # batch 0 waits for its delivery
            await settle()
            assert ("write", 1) in w.steps.events
            w.writer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(w.writer, HANG_S)
            await settle()
            assert ("cancelled", 1) in w.steps.events
            assert w.batch(0).deliveries[0].cancelled()
            assert not w.acked(0)
            assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(scenario())
