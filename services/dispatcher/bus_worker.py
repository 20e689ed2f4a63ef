"""The dispatcher on a :class:`~services.common.bus.Bus`: the loop of ``citybrain run``.

It runs the same :class:`~services.dispatcher.steps.DispatchSteps` through the same
:func:`~services.dispatcher.writer.write_in_order` as the faust worker, with the two seams
filled for a single process: group state and per-camera counts in dicts, and dead letters
published on the bus. Only the loop is its own: a bus consumer is the batch source, a
batch's messages are committed once it is written (at-least-once), and expired state is
pruned on a timer, as the faust app's timer does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from services.common.bus import Bus, BusConsumer, BusMessage, Headers
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC
from services.dispatcher.steps import DispatchSteps, SourceMessage
from services.dispatcher.writer import write_in_order

log = logging.getLogger(__name__)

EMBEDDED_GROUP_ID = "citybrain-embedded-dispatcher"
# How long one poll of the bus waits for a first message: also how long a stop may wait for
# the poll in flight to return.
POLL_TIMEOUT_S = 0.5


class BusDeadLetters:
    """Dead letters published on the bus's dead-letter topic."""

    def __init__(self, bus: Bus, *, topic: str = VIOLATIONS_DLQ_TOPIC.name) -> None:
        self._bus = bus
        self._topic = topic

    async def send(self, message: SourceMessage, *, headers: Headers) -> Awaitable[Any]:
        self._bus.publish(self._topic, message.value or b"", key=message.key, headers=headers)
        # Delivered once the bus has flushed it (at once on the in-memory bus).
        return asyncio.ensure_future(asyncio.to_thread(self._bus.flush))


class BusIntake:
    """A bus consumer as the writer's batch source.

    Every call on the consumer runs on one thread of its own: a poll blocks, and
    kafka-python's consumer must not be used from two threads at once.
    """

    def __init__(self, consumer: BusConsumer, *, max_events: int) -> None:
        self._consumer = consumer
        self._max_events = max_events
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="dispatch-bus"
        )

    async def take(self) -> list[BusMessage]:
        poll = functools.partial(
            self._consumer.poll, timeout_s=POLL_TIMEOUT_S, max_records=self._max_events
        )
        loop = asyncio.get_running_loop()
        while True:
            batch = await loop.run_in_executor(self._thread, poll)
            if batch:
                return batch

    def done(self, messages: Sequence[BusMessage]) -> None:
        committed = self._thread.submit(self._consumer.commit, messages)
        committed.add_done_callback(_log_commit_failure)

    async def close(self) -> None:
        """Leave the group; what was not committed goes to the group's next consumer."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._consumer.close)
        self._thread.shutdown(wait=False)


def _log_commit_failure(committed: concurrent.futures.Future[None]) -> None:
    exc = committed.exception()
    if exc is not None:
        log.warning("commit failed, the batch will be delivered again: %s", exc)


async def prune_every(steps: DispatchSteps[Any], *, interval_s: float) -> None:
    """Prune expired state every ``interval_s``, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        await steps.prune()


async def dispatch_from_bus(
    bus: Bus,
    steps: DispatchSteps[BusMessage],
    *,
    max_events: int,
    prune_interval_s: float,
    stop: asyncio.Event,
    group_id: str = EMBEDDED_GROUP_ID,
) -> None:
    """Dispatch the violations topic until ``stop`` is set, or raise what stopped a batch.

    A stop abandons the batch being written, whatever it waits for (Redis or the bus that
    is away): it was not committed, so the group's next consumer gets it again, and the
    queue's idempotent writes make that harmless.
    """
    bus.ensure_topics([VIOLATIONS_TOPIC, VIOLATIONS_DLQ_TOPIC])
    intake = BusIntake(
        bus.subscribe([VIOLATIONS_TOPIC.name], group_id=group_id), max_events=max_events
    )
    writing = asyncio.ensure_future(write_in_order(intake, steps))
    pruning = asyncio.ensure_future(prune_every(steps, interval_s=prune_interval_s))
    stopping = asyncio.ensure_future(stop.wait())
    tasks: set[asyncio.Future[Any]] = {writing, pruning, stopping}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for worker in (writing, pruning):
            if worker.done():
                worker.result()
    finally:
        # The batch being written, whatever it waits for, is not committed: given up.
        steps.executor.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await intake.close()
