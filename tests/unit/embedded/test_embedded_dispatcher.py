"""The embedded loop of ``citybrain run``: the shared dispatch steps on the in-memory bus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from services.common.bus import BusMessage
from services.common.bus.memory import InMemoryBus
from services.common.config.catalogue import load_catalogue
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC
from services.common.queue.memory import InMemoryQueue
from services.dispatcher.bus_worker import EMBEDDED_GROUP_ID, BusDeadLetters, dispatch_from_bus
from services.dispatcher.config import DispatchConfig
from services.dispatcher.core import Dispatcher
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.steps import DictStore, DispatchSteps
from tests.contract.bus import drain
from tests.events import make_event

# Generous: on a loaded machine the loop may take seconds to get going. Never a timing
# assertion, only a bound on how long the test waits for what must happen.
WAIT_S = 60.0


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"after {WAIT_S:.0f} s still waiting for {what}"
        await asyncio.sleep(0.02)


def test_valid_events_are_queued_garbage_is_dead_lettered_and_all_is_committed() -> None:
    bus, queue, registry = InMemoryBus(), InMemoryQueue(), CollectorRegistry()
    config = DispatchConfig()
    store = DictStore()
    steps: DispatchSteps[BusMessage] = DispatchSteps(
        dispatcher=Dispatcher(config=config, catalogue=load_catalogue()),
        queue=queue,
        metrics=DispatcherMetrics.create(registry),
        store=store,
        dead_letters=BusDeadLetters(bus),
    )
    event = make_event()
    bus.ensure_topics([VIOLATIONS_TOPIC])
    for value in (b"\x00garbage", event.to_json(), event.to_json()):
        bus.publish(VIOLATIONS_TOPIC.name, value, key=b"wuzhen-cam-01")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.ensure_future(
            dispatch_from_bus(
                bus, steps, max_events=config.batch.max_events, prune_interval_s=60, stop=stop
            )
        )
        await _until(lambda: not uncommitted(bus), "every message committed")
        stop.set()
        await loop

    asyncio.run(main())
    (entry,) = asyncio.run(queue.read())
    assert entry.violation_id == event.violation_id
    assert entry.fields["district"] == "town"
    assert store.counters == {"wuzhen-cam-01": {"dispatch": 1, "duplicate": 1}}
    (dead,) = drain(bus.subscribe([VIOLATIONS_DLQ_TOPIC.name], group_id="check"), 1)
    assert dead.value == b"\x00garbage"
    assert dead.header("reason") == b"not_json"
    partition = dead_source_partition(bus)
    assert dead.header("source") == f"{VIOLATIONS_TOPIC.name}/{partition}/0".encode()
    assert registry.get_sample_value("citybrain_dead_lettered_total", {"reason": "not_json"}) == 1
    assert registry.get_sample_value("citybrain_dispatched_total") == 1


def uncommitted(bus: InMemoryBus) -> list[BusMessage]:
    """What the group's next consumer would be given again."""
    return bus.subscribe([VIOLATIONS_TOPIC.name], group_id=EMBEDDED_GROUP_ID).poll(timeout_s=0)


def dead_source_partition(bus: InMemoryBus) -> int:
    return next(p for p, n in enumerate(bus.end_offsets(VIOLATIONS_TOPIC.name)) if n)
