"""The dispatcher's faust consumer: the inline hand-off and the prompt resume."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest
from faust.transport.drivers import aiokafka
from faust.types import TP
from mode.services import WaitResults

from services.dispatcher.transport import PAUSED_FETCH_WAIT_S, App, Consumer, hand_off

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
