"""The live stream (``GET /api/stream``): the queue's change log as Server-Sent Events.

One :class:`ChangeFeed` per process reads the change log and fans each record out to every
open stream, rendered once, so fifty dashboards cost one Redis reader, not fifty. A stream
that resumes (``Last-Event-ID``) first replays the log after its id, then joins the live
records, skipping any it already sent: nothing is lost or repeated. A dashboard that falls
too far behind is disconnected and resumes from its last id the same way. If the log no
longer holds that id (it is capped), the stream says ``event: reset`` so the page reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from services.common.queue import Change, ControlCenterQueue, QueueUnavailableError, stream_id_key

log = logging.getLogger(__name__)

# A stream's reconnect delay, sent to the browser (ms), and how long the feed waits for the
# next change-log record in one blocking read.
RETRY_MS = 1_000
FEED_BLOCK_MS = 5_000
CATCH_UP_PAGE = 500


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One SSE event, encoded once however many streams send it."""

    event_id: str
    wire: bytes


def render(change: Change) -> StreamEvent:
    """A change as an SSE event whose data is the entry as ``feed --json`` prints it."""
    data = json.dumps(change.entry.to_feed_dict(), ensure_ascii=False, separators=(",", ":"))
    wire = f"id: {change.change_id}\nevent: {change.kind.value}\ndata: {data}\n\n".encode()
    return StreamEvent(event_id=change.change_id, wire=wire)


_CLOSED = StreamEvent(event_id="", wire=b"")


class Subscriber:
    """One open stream's buffer of live events, a batch (one change-log read) at a time."""

    def __init__(self, size: int) -> None:
        self.batches: asyncio.Queue[list[StreamEvent]] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, batch: list[StreamEvent]) -> None:
        try:
            self.batches.put_nowait(batch)
        except asyncio.QueueFull:
            self.overflowed = True

    async def take(self, *, timeout_s: float) -> list[StreamEvent]:
        """Every batch waiting, as one list (one write to the socket however many there
        are); waits up to ``timeout_s`` for the first, raising ``TimeoutError``."""
        events = await asyncio.wait_for(self.batches.get(), timeout=timeout_s)
        while not self.batches.empty():
            events = events + self.batches.get_nowait()
        return events


class ChangeFeed:
    """Follows the change log from the moment it starts and hands records to subscribers."""

    def __init__(self, queue: ControlCenterQueue, *, buffer: int) -> None:
        self._queue = queue
        self._buffer = buffer
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        # The start point is looked up inside the task: the service must come up, and serve
        # /healthz and its 503s, while Redis is away, and follow the log once it is back.
        self._task = asyncio.create_task(self._follow(), name="change-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for subscriber in self._subscribers:
            subscriber.offer([_CLOSED])

    async def _follow(self) -> None:
        after: str | None = None
        while True:
            try:
                if after is None:
                    after = await self._queue.last_change_id()
                changes = await self._queue.changes(after=after, block_ms=FEED_BLOCK_MS)
            except QueueUnavailableError as exc:
                log.warning("change log unavailable, retrying in 1 s: %s", exc)
                await asyncio.sleep(1)
                continue
            batch = []
            for change in changes:
                after = change.change_id
                try:
                    batch.append(render(change))
                except (TypeError, ValueError):
                    # One bad record must not stop every dashboard's live feed.
                    log.exception("change %s cannot be rendered; skipped", change.change_id)
            if batch:
                for subscriber in list(self._subscribers):
                    subscriber.offer(batch)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        subscriber = Subscriber(self._buffer)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)


async def event_stream(
    *,
    queue: ControlCenterQueue,
    feed: ChangeFeed,
    last_event_id: str | None,
    heartbeat_s: float,
) -> AsyncIterator[bytes]:
    """The bytes of one SSE response: replay after ``last_event_id``, then live events."""
    with feed.subscribe() as subscriber:
        # Where a fresh stream starts is fixed before its first byte, so a client that
        # sees the response begin misses nothing appended after that.
        sent = last_event_id or await queue.last_change_id()
        yield f"retry: {RETRY_MS}\n\n".encode()
        first = await queue.first_change_id()
        # "0-0" asks for everything kept; any other id older than the oldest kept means
        # records after it may have been trimmed.
        trimmed = first != "0-0" and stream_id_key(sent) < stream_id_key(first)
        if last_event_id not in (None, "0-0") and trimmed:
            yield b"event: reset\ndata: {}\n\n"
        while True:
            page = await queue.changes(after=sent, block_ms=0, count=CATCH_UP_PAGE)
            for change in page:
                yield render(change).wire
                sent = change.change_id
            if len(page) < CATCH_UP_PAGE:
                break
        while not subscriber.overflowed:
            try:
                events = await subscriber.take(timeout_s=heartbeat_s)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if any(e is _CLOSED for e in events):
                return
            fresh = [e for e in events if stream_id_key(e.event_id) > stream_id_key(sent)]
            if fresh:
                yield b"".join(e.wire for e in fresh)
                sent = fresh[-1].event_id
