"""The dispatch writer: batch after batch, in order, with the steps of three batches overlapping.

Both dispatch loops run it: the faust worker with its intake as the batch source, and the
embedded loop of ``citybrain run`` with a bus consumer; the steps are
:class:`~services.dispatcher.steps.DispatchSteps` in both. A batch goes through three steps:

1. **plan**: the pure core decides every message (CPU only);
2. **write**: dead letters are produced, entries and repeats go to Redis in one script call,
   and only then is the state sent to the tables' changelogs;
3. **ack**: once the dead letters and the state are on the broker, its messages are acked.

Batch N+1 is planned while batch N's script runs in Redis, and batch N's acknowledgements
from the broker arrive while N+1 is written: the worker does not sit idle waiting for
either. Order is kept where it matters. Writes run one batch at a time, in order. A batch is
planned against the state left by every batch before it: the table holds all but the batch
still being written, whose groups the plan reads first. At most two batches wait for their
acks, so memory stays bounded when the broker is slow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol

from services.dispatcher.core import GroupState, MessageT, Plan


class BatchSource(Protocol[MessageT]):
    """Where batches come from: faust's intake, or a bus consumer."""

    async def take(self) -> list[MessageT]:
        """The next batch, in order; waits for one."""

    def done(self, messages: Sequence[MessageT]) -> None:
        """Ack ``messages``, handled: they are not delivered again."""


class BatchSteps(Protocol[MessageT]):
    def plan(
        self, messages: Sequence[MessageT], *, newer: Mapping[str, GroupState]
    ) -> Plan[MessageT]:
        """Decide a batch; ``newer`` is group state not yet stored, read before the store."""

    async def write(self, plan: Plan[MessageT]) -> list[Awaitable[Any]]:
        """Carry out ``plan``; returns the deliveries that must land before the batch's
        messages may be acked."""


# Batches written whose acks are still awaited, at most: bounds memory when the broker is
# slow, and lets the broker's acks for one batch arrive while the next is written.
MAX_AWAITING_ACKS = 2


@dataclass(frozen=True, slots=True)
class _Written(Generic[MessageT]):
    plan: Plan[MessageT]
    written: asyncio.Future[list[Awaitable[Any]]]


async def write_in_order(intake: BatchSource[MessageT], steps: BatchSteps[MessageT]) -> None:
    """Plan, write and ack batch after batch until cancelled; raises what stops a batch."""
    previous: _Written[MessageT] | None = None
    # The ack of every batch written and not yet acked, oldest first.
    awaiting: list[asyncio.Future[None]] = []
    try:
        while True:
            messages = await _take_unless_failed(intake, awaiting)
            plan = steps.plan(messages, newer=previous.plan.groups if previous else {})
            if previous is not None:
                await previous.written
            while len(awaiting) >= MAX_AWAITING_ACKS:
                await awaiting.pop(0)
            written = asyncio.ensure_future(steps.write(plan))
            awaiting.append(asyncio.ensure_future(_ack_once_delivered(intake, messages, written)))
            previous = _Written(plan, written)
    finally:
        abandoned: list[asyncio.Future[Any]] = [*awaiting]
        if previous is not None:
            abandoned.append(previous.written)
        for future in abandoned:
            future.cancel()
            # A batch that fails meanwhile, or while it is being cancelled, is given up with
            # the rest, unacked: its failure is not news to anyone.
            future.add_done_callback(_forget_failure)


async def _take_unless_failed(
    intake: BatchSource[MessageT], awaiting: list[asyncio.Future[None]]
) -> list[MessageT]:
    """The next batch; raises at once if a batch awaiting its acks fails meanwhile, rather
    than when a next batch comes, which may be never."""
    _forget_acked(awaiting)
    if not awaiting:
        return await intake.take()
    taking = asyncio.ensure_future(intake.take())
    try:
        while not taking.done():
            waiters: set[asyncio.Future[Any]] = {taking, *awaiting}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            _forget_acked(awaiting)
        return taking.result()
    finally:
        taking.cancel()


def _forget_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _forget_acked(awaiting: list[asyncio.Future[None]]) -> None:
    """Drop the batches acked from ``awaiting``; raises the failure of one that failed."""
    for future in [f for f in awaiting if f.done()]:
        future.result()
        awaiting.remove(future)


async def _ack_once_delivered(
    intake: BatchSource[MessageT],
    messages: Sequence[MessageT],
    written: asyncio.Future[list[Awaitable[Any]]],
) -> None:
    await asyncio.gather(*await written)
    intake.done(messages)
