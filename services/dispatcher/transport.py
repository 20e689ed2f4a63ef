"""faust's Kafka transport with a cheaper hand-off of each fetched message.

faust's consumer loop (``Consumer._drain_messages``) passes every fetched message to the
conductor as ``wait_first(callback(message), suspend_flow.wait())``: four tasks and an
``asyncio.wait`` a message, so that a rebalance can abandon a callback that is stuck. That
was the largest single cost left on the dispatcher's path: without it a drain ran about
one and a half times as fast. Our callback only puts the message into a buffer, and it is
only stuck while that buffer is full, which the writer task keeps emptying, or while flow
control holds it during a rebalance, which ends. So while the flow runs, this consumer
awaits the callback in its own task; a suspended flow takes faust's path.
"""

from __future__ import annotations

from collections.abc import Coroutine

import faust
from faust.transport.drivers import aiokafka
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds


class Consumer(aiokafka.Consumer):
    """faust's aiokafka consumer; the per-message hand-off runs inline."""

    async def wait_first(self, *coros: WaitArgT, timeout: Seconds | None = None) -> WaitResults:
        """As ``Service.wait_first``, with no tasks for ``_drain_messages``' hand-off.

        In faust 0.15.3 that is the one caller of a consumer's ``wait_first``:
        ``wait_first(callback(message), suspend_flow.wait())``.
        """
        if timeout is not None:
            return await super().wait_first(*coros, timeout=timeout)
        if len(coros) != 2 or self.suspend_flow.is_set():
            return await super().wait_first(*coros)
        callback, suspended = coros
        if not isinstance(callback, Coroutine) or not isinstance(suspended, Coroutine):
            return await super().wait_first(*coros)
        suspended.close()  # never started, so never awaited
        result = await callback
        return WaitResults([callback], [result], False)


class Transport(aiokafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """A ``faust.App`` whose Kafka consumer is :class:`Consumer`."""

    def _new_transport(self) -> Transport:
        return Transport(self.conf.broker_consumer, self)
