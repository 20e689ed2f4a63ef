import asyncio

from prometheus_client import CollectorRegistry

from services.common.bus.memory import InMemoryBus
from services.common.config.catalogue import load_catalogue
from services.common.events import (
    VIOLATIONS_DLQ_TOPIC,
    VIOLATIONS_TOPIC,
    ViolationEvent,
    ViolationType,
)
from services.common.queue.memory import InMemoryQueue
from services.dispatcher.config import DispatchConfig
from services.dispatcher.core import Dispatcher
from services.dispatcher.executor import PlanExecutor
from services.dispatcher.metrics import DispatcherMetrics
from services.embedded import EmbeddedDispatcher
from tests.contract.bus import drain


def test_valid_events_are_queued_and_garbage_is_dead_lettered() -> None:
    bus, queue, registry = InMemoryBus(), InMemoryQueue(), CollectorRegistry()
    config = DispatchConfig()
    metrics = DispatcherMetrics.create(registry)
    embedded = EmbeddedDispatcher(
        bus=bus,
        dispatcher=Dispatcher(config=config, catalogue=load_catalogue()),
        executor=PlanExecutor(queue=queue, metrics=metrics, retry=config.redis_retry),
        metrics=metrics,
    )
    event = ViolationEvent.create(
        violation_type=ViolationType.RED_LIGHT,
        camera_id="wuzhen-cam-01",
        city="wuzhen",
        frame=5,
        ts_ms=1_700_000_000_000,
        track_id=3,
        bbox_xywh=(1, 2, 3, 4),
        confidence=0.9,
    )
    for value in (b"\x00garbage", event.to_json(), event.to_json()):
        bus.publish(VIOLATIONS_TOPIC.name, value, key=b"wuzhen-cam-01")

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(embedded.run(stop))
        for _ in range(50):
            await asyncio.sleep(0.05)
            if await queue.read():
                break
        stop.set()
        await task

    asyncio.run(main())
    (entry,) = asyncio.run(queue.read())
    assert entry.violation_id == event.violation_id
    assert entry.fields.district == "town"
    dlq = bus.subscribe([VIOLATIONS_DLQ_TOPIC.name], group_id="check")
    (dead,) = drain(dlq, 1, deadline_s=1)
    assert dead.value == b"\x00garbage"
    assert dead.header("reason") == b"not_json"
    assert (
        dead.header("source") == f"{VIOLATIONS_TOPIC.name}/{dead_source_partition(bus)}/0".encode()
    )
    assert registry.get_sample_value("citybrain_dead_lettered_total", {"reason": "not_json"}) == 1
    assert registry.get_sample_value("citybrain_dispatched_total") == 1


def dead_source_partition(bus: InMemoryBus) -> int:
    return next(p for p, n in enumerate(bus.end_offsets(VIOLATIONS_TOPIC.name)) if n)
