"""PlanExecutor: retries while the queue is away, and gives up only once stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from services.common.bus import BusMessage
from services.common.config.catalogue import load_catalogue
from services.common.queue import AppendResult, PendingEntry, QueueUnavailableError
from services.common.queue.memory import InMemoryQueue
from services.dispatcher.config import DispatchConfig, RetrySettings
from services.dispatcher.core import Dispatcher, Plan
from services.dispatcher.executor import PlanExecutor, WriteAbandonedError
from services.dispatcher.metrics import DispatcherMetrics
from tests.events import as_messages, make_event

# A bound on how long a test waits for what must happen, never a timing assertion.
HANG_S = 30.0


class FlakyQueue(InMemoryQueue):
    """Refuses the first ``failures`` batch writes, or every one with ``failures=None``."""

    def __init__(self, failures: int | None) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def append_many(self, entries: Sequence[PendingEntry]) -> list[AppendResult]:
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise QueueUnavailableError("connection refused")
        return await super().append_many(entries)


def executor_on(
    queue: FlakyQueue, *, backoff_s: float
) -> tuple[PlanExecutor, CollectorRegistry, Plan[BusMessage]]:
    registry = CollectorRegistry()
    executor = PlanExecutor(
        queue=queue,
        metrics=DispatcherMetrics.create(registry),
        retry=RetrySettings(initial_backoff_s=backoff_s, max_backoff_s=backoff_s * 2),
    )
    dispatcher = Dispatcher(config=DispatchConfig(), catalogue=load_catalogue())
    plan = dispatcher.plan(as_messages(make_event().to_json()), state={}, now_ms=0)
    return executor, registry, plan


def retries(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value("citybrain_redis_write_retries_total")


@pytest.mark.parametrize("failures", [0, 1, 3])
def test_a_write_is_retried_until_the_queue_takes_it(failures: int) -> None:
    queue = FlakyQueue(failures)
    executor, registry, plan = executor_on(queue, backoff_s=0.001)
    asyncio.run(executor.write_entries(plan))
    assert queue.attempts == failures + 1
    assert retries(registry) == failures
    assert registry.get_sample_value("citybrain_dispatched_total") == 1
    assert len(asyncio.run(queue.read())) == 1


def test_stop_ends_a_retry_that_waits_for_the_queue() -> None:
    queue = FlakyQueue(None)
    # A backoff far longer than the test may wait: only the stop can end the wait.
    executor, registry, plan = executor_on(queue, backoff_s=10.0)

    async def scenario() -> None:
        writing = asyncio.ensure_future(executor.write_entries(plan))
        while not retries(registry):
            await asyncio.sleep(0.01)
        executor.stop()
        with pytest.raises(WriteAbandonedError, match="connection refused"):
            await asyncio.wait_for(writing, timeout=HANG_S)

    asyncio.run(scenario())
    assert queue.attempts == 2  # the first, then one last try on the stop
    assert retries(registry) == 1
    assert registry.get_sample_value("citybrain_dispatched_total") == 0


def test_the_last_try_on_a_stop_may_still_succeed() -> None:
    queue = FlakyQueue(1)
    executor, registry, plan = executor_on(queue, backoff_s=10.0)

    async def scenario() -> None:
        writing = asyncio.ensure_future(executor.write_entries(plan))
        while not retries(registry):
            await asyncio.sleep(0.01)
        executor.stop()
        await asyncio.wait_for(writing, timeout=HANG_S)

    asyncio.run(scenario())
    assert registry.get_sample_value("citybrain_dispatched_total") == 1


def test_after_a_stop_a_refused_write_is_not_retried() -> None:
    queue = FlakyQueue(None)
    executor, registry, plan = executor_on(queue, backoff_s=10.0)
    executor.stop()
    with pytest.raises(WriteAbandonedError):
        asyncio.run(executor.write_entries(plan))
    assert queue.attempts == 1
    assert retries(registry) == 0
