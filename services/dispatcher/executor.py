"""Carrying out a dispatch plan against the control-center queue, on any transport.

The dispatch steps (:mod:`services.dispatcher.steps`), which the faust worker and the
embedded loop of ``citybrain run`` both run, hand each plan here: retries, idempotent writes
and the counting of outcomes are the same whichever bus the events came from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.common.bus import Headers
from services.common.queue import (
    ControlCenterQueue,
    EntryNotFoundError,
    PendingEntry,
    QueueUnavailableError,
)
from services.dispatcher.config import RetrySettings
from services.dispatcher.core import DeadLetter, Dispatch, Duplicate, Plan, Repeat
from services.dispatcher.metrics import DispatcherMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# Dead-letter headers; the source position makes redelivered dead letters recognisable.
HEADER_REASON = "reason"
HEADER_DETAIL = "detail"
HEADER_SOURCE = "source"
MAX_DETAIL_BYTES = 1_024


class WriteAbandonedError(Exception):
    """A write given up because the dispatcher is stopping while the queue is away: its
    batch stays unacked, and is delivered again after the restart."""


class PlanExecutor:
    """Writes a plan's entries and repeats to the queue, retrying while it is unavailable,
    until :meth:`stop`."""

    def __init__(
        self, *, queue: ControlCenterQueue, metrics: DispatcherMetrics, retry: RetrySettings
    ) -> None:
        self._queue = queue
        self._metrics = metrics
        self._retry = retry
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop retrying: a write waiting for the queue tries once more at once, and from
        then on a write the queue refuses raises :class:`WriteAbandonedError`."""
        self._stopping.set()

    def dead_letter(
        self, decision: DeadLetter, *, topic: str, partition: int, offset: int
    ) -> Headers:
        """Count and log a rejected message; returns the headers its dead letter carries:
        why it was rejected and where it came from (topic/partition/offset)."""
        self._metrics.dead_lettered.labels(reason=decision.reason.value).inc()
        log.warning(
            "dead-lettering %s[%d]@%d: %s: %s",
            topic,
            partition,
            offset,
            decision.reason.value,
            decision.detail[:200],
        )
        return (
            (HEADER_REASON, decision.reason.value.encode()),
            (HEADER_DETAIL, decision.detail.encode()[:MAX_DETAIL_BYTES]),
            (HEADER_SOURCE, f"{topic}/{partition}/{offset}".encode()),
        )

    async def write_entries(self, plan: Plan[Any]) -> None:
        dispatches = [d for d in plan.decisions if isinstance(d, Dispatch)]
        if not dispatches:
            return
        entries: list[PendingEntry] = [d.entry for d in dispatches]
        results = await self._with_retry(lambda: self._queue.append_many(entries))
        written_s = time.time()
        for decision, result in zip(dispatches, results, strict=True):
            if not result.created:
                # A redelivery after a crash, or a repeat of an id older than our state.
                self._metrics.duplicates.inc()
                continue
            self._metrics.dispatched.inc()
            self._metrics.latency.observe(max(0.0, written_s - decision.ts_ms / 1000))
            if not decision.catalogued:
                self._metrics.unknown_camera.inc()

    async def write_repeats(self, plan: Plan[Any]) -> None:
        for decision in plan.decisions:
            if isinstance(decision, Duplicate):
                self._metrics.duplicates.inc()
            elif isinstance(decision, Repeat):
                await self._record_repeat(decision)

    async def _record_repeat(self, repeat: Repeat) -> None:
        def record() -> Awaitable[int]:
            return self._queue.record_repeat(
                repeat.violation_id, ts_ms=repeat.ts_ms, repeat_id=repeat.repeat_id
            )

        try:
            await self._with_retry(record)
        except EntryNotFoundError:
            # Only if Redis lost the entry itself (e.g. restored from an older snapshot).
            log.error("repeat %s: entry %s is gone", repeat.repeat_id, repeat.violation_id)
            return
        self._metrics.grouped.inc()

    async def _back_off(self, backoff_s: float) -> None:
        """Sleep ``backoff_s``, or less if a stop comes first (for one last try)."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            # Not wait_for: in Python 3.11 it can swallow a cancellation that comes as the
            # stop does, and a cancelled write must end.
            await asyncio.wait({stopping}, timeout=backoff_s)
        finally:
            stopping.cancel()

    async def _with_retry(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until Redis takes it, backing off exponentially; gives up only once
        :meth:`stop` was called, raising :class:`WriteAbandonedError`."""
        backoff_s = self._retry.initial_backoff_s
        while True:
            started = time.perf_counter()
            try:
                result = await op()
            except QueueUnavailableError as exc:
                if self._stopping.is_set():
                    raise WriteAbandonedError(f"control-center queue unavailable: {exc}") from exc
                self._metrics.redis_retries.inc()
                log.warning("control-center queue unavailable, retry in %.2fs: %s", backoff_s, exc)
                await self._back_off(backoff_s)
                backoff_s = min(backoff_s * 2, self._retry.max_backoff_s)
                continue
            self._metrics.redis_write.observe(time.perf_counter() - started)
            return result
