"""The hand-over from faust's consumer to the dispatch writer, a fetched batch at a time.

The consumer delivers each partition's fetched messages to :class:`Intake` (its batch sink
for the source topic); the writer, whenever it is free, takes what waits: at most
``max_events``, after waiting at most ``max_wait_s`` for a batch to fill. Fetching and
writing overlap, and a batch grows with the load: a few events when idle, ``max_events``
under a backlog. No event, stream or task is made per message.

What faust's stream did per message, the intake does per batch:

- **Tracking.** Delivered messages are tracked as unacked in faust's consumer, so a
  rebalance or a clean stop waits for them to be handled before it commits. Once handled
  they are acked, and faust commits no further than the acked offsets.
- **Bounded memory.** Once ``4 * max_events`` wait, every partition that delivers more is
  paused; all resume once at most ``2 * max_events`` wait. While Redis is away the writer
  waits, so fetching stops there.
- **Rebalances.** When a rebalance suspends the flow, faust clears its stream buffers; the
  intake drops what waits in the same way and stops tracking it. Messages of an older
  generation are dropped when taken, as faust's stream skips them. A rebalance always ends
  with faust reading the new assignment again from the committed offsets, and nothing past
  a dropped message can be committed before that (commits stop at the first unacked
  offset), so a dropped message is read again, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import faust
from faust.types import TP, Message

from services.dispatcher.faust_internals.monitor import BatchMonitor

# Fetching pauses once this many batches wait, and resumes once at most RESUME_AT_BATCHES
# do: one fetch brings up to about a thousand events a partition, and it must land while
# the writer still has work, or the writer waits for the broker.
PAUSE_AT_BATCHES = 4
RESUME_AT_BATCHES = 2


class Intake:
    """Messages of the source topic fetched and not yet handled: the consumer's batch sink."""

    def __init__(self, app: faust.App, *, max_events: int, max_wait_s: float) -> None:
        self._app = app
        self._max_events = max_events
        self._max_wait_s = max_wait_s
        self._messages: list[Message] = []
        self._paused: set[TP] = set()
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        # faust calls ``clear`` on its flow-control event's managed queues; held weakly there.
        app.flow_control.manage_queue(self)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def _monitor(self) -> BatchMonitor:
        monitor = self._app.monitor
        assert isinstance(monitor, BatchMonitor), "instrument() installs the batch monitor"
        return monitor

    def deliver(self, tp: TP, messages: Sequence[Message]) -> None:
        self._app.consumer.unacked.update(messages)
        self._monitor.on_batch_in(tp, messages)
        self._messages.extend(messages)
        self._arrived.set()
        waiting = len(self._messages)
        if waiting >= self._max_events:
            self._full.set()
        if waiting >= PAUSE_AT_BATCHES * self._max_events:
            self._paused.add(tp)
            self._app.consumer.on_buffer_full(tp)

    async def take(self) -> list[Message]:
        """The oldest waiting messages of the current generation, at most ``max_events``.

        Waits for a first message, then at most ``max_wait_s`` for the batch to fill.
        """
        while True:
            await self._arrived.wait()
            if len(self._messages) < self._max_events:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout=self._max_wait_s)
            batch = self._messages[: self._max_events]
            del self._messages[: self._max_events]
            self._on_taken()
            generation_id = self._app.consumer_generation_id
            current = [m for m in batch if m.generation_id == generation_id]
            if len(current) < len(batch):
                self._untrack([m for m in batch if m.generation_id != generation_id])
            if current:
                return current

    def done(self, messages: Sequence[Message]) -> None:
        """Ack ``messages``, handled: faust may now commit their offsets."""
        ack = self._app.consumer.ack
        for message in messages:
            ack(message)
        self._monitor.on_batch_out(messages)

    def clear(self) -> None:
        """Called by faust's flow control: when it suspends the flow, drop what waits.

        faust also clears its buffers when it resumes the flow, after it has sought back to
        the committed offsets; what waits then was fetched from there, so it stays.
        """
        if self._app.flow_control.is_active():
            return
        dropped, self._messages = self._messages, []
        self._untrack(dropped)
        self._on_taken()

    def abandon(self) -> None:
        """Give up every message handed out or waiting, unacked: the writer has stopped.

        faust's stop waits for every tracked message to be acked; these never will be, so
        they are untracked. Commits stop before the first of them, so all are read again
        after a restart.
        """
        self._messages = []
        self._on_taken()
        # Waiting or handed out, every one of them is tracked until acked.
        self._untrack([m for m in self._app.consumer.unacked if not m.acked])

    def _untrack(self, messages: Sequence[Message]) -> None:
        self._app.consumer.unacked.difference_update(messages)
        self._monitor.on_batch_out(messages)

    def _on_taken(self) -> None:
        waiting = len(self._messages)
        if not waiting:
            self._arrived.clear()
        if waiting < self._max_events:
            self._full.clear()
        if waiting <= RESUME_AT_BATCHES * self._max_events:
            for tp in self._paused:
                self._app.consumer.on_buffer_drop(tp)
            self._paused.clear()
