"""The dispatch steps that both loops run, over the dict store and the in-memory bus.

The faust worker runs the same :class:`DispatchSteps` with faust's tables and topic in the
two seams; these tests pin down what a batch does whatever fills them: dead letters,
entries, repeats, state stored after the writes, outcomes counted per camera, pruning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.common.bus import BusMessage
from services.common.bus.memory import InMemoryBus
from services.common.config.catalogue import load_catalogue
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC
from services.common.queue.memory import InMemoryQueue
from services.dispatcher.bus_worker import BusDeadLetters
from services.dispatcher.config import DispatchConfig
from services.dispatcher.core import Dispatcher, group_key
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.steps import DictStore, DispatchSteps, StateChange
from tests.contract.bus import drain
from tests.events import EVENT_TS_MS, as_messages, make_event

HORIZON_S = 3_600


class RecordingStore(DictStore):
    """The dict store, recording what each batch asks it to persist."""

    def __init__(self) -> None:
        super().__init__()
        self.persisted: list[tuple[list[StateChange], list[StateChange]]] = []

    async def persist(
        self, *, groups: Sequence[StateChange], counters: Sequence[StateChange]
    ) -> list[Awaitable[Any]]:
        self.persisted.append((list(groups), list(counters)))
        return []


class Rig:
    def __init__(self) -> None:
        self.bus = InMemoryBus()
        self.queue = InMemoryQueue()
        self.registry = CollectorRegistry()
        self.store = RecordingStore()
        config = DispatchConfig(dedup_horizon_s=HORIZON_S)
        self.steps: DispatchSteps[BusMessage] = DispatchSteps(
            dispatcher=Dispatcher(config=config, catalogue=load_catalogue()),
            queue=self.queue,
            metrics=DispatcherMetrics.create(self.registry),
            store=self.store,
            dead_letters=BusDeadLetters(self.bus),
        )

    async def run(self, messages: Sequence[BusMessage]) -> None:
        deliveries = await self.steps.write(self.steps.plan(messages, newer={}))
        await asyncio.gather(*deliveries)

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def test_a_batch_dead_letters_dispatches_groups_and_drops_duplicates() -> None:
    rig = Rig()
    first = make_event(camera_id="wuzhen-cam-01", track_id=7)
    repeat = make_event(camera_id="wuzhen-cam-01", track_id=7, ts_ms=EVENT_TS_MS + 60_000)
    other = make_event(camera_id="hangzhou-cam-02", track_id=9)
    batch = as_messages(
        first.to_json(), b"\x00garbage", repeat.to_json(), first.to_json(), other.to_json()
    )

    asyncio.run(rig.run(batch))

    entries = asyncio.run(rig.queue.read())
    assert [e.violation_id for e in entries] == [first.violation_id, other.violation_id]
    assert entries[0].repeat_count == 1
    (dead,) = drain(rig.bus.subscribe([VIOLATIONS_DLQ_TOPIC.name], group_id="check"), 1)
    assert dead.value == b"\x00garbage"
    assert dead.header("reason") == b"not_json"
    assert dead.header("source") == f"{VIOLATIONS_TOPIC.name}/0/1".encode()
    assert rig.store.counters == {
        "wuzhen-cam-01": {"dispatch": 1, "repeat": 1, "duplicate": 1},
        "hangzhou-cam-02": {"dispatch": 1},
    }
    assert rig.metric("citybrain_dispatcher_events_total") == 5
    assert rig.metric("citybrain_dispatched_total") == 2
    assert rig.metric("citybrain_grouped_total") == 1
    assert rig.metric("citybrain_duplicates_dropped_total") == 1
    assert rig.metric("citybrain_dead_lettered_total", reason="not_json") == 1
    assert rig.metric("citybrain_redis_write_retries_total") == 0


def test_state_is_stored_beside_the_message_that_last_changed_it() -> None:
    rig = Rig()
    first = make_event(track_id=7)
    repeat = make_event(track_id=7, ts_ms=EVENT_TS_MS + 1_000)
    batch = [*as_messages(first.to_json()), *as_messages(repeat.to_json(), partition=4)]

    asyncio.run(rig.run(batch))

    key = group_key(first)
    ((groups, counters),) = rig.store.persisted
    assert groups == [
        StateChange(
            partition=4,
            key=key,
            value={
                "violation_id": first.violation_id,
                "last_ts_ms": repeat.ts_ms,
                "recent_ids": [first.violation_id, repeat.violation_id],
                "partition": 4,
            },
        )
    ]
    assert counters == [
        StateChange(partition=4, key="wuzhen-cam-01", value={"dispatch": 1, "repeat": 1})
    ]
    assert rig.store.groups[key] == groups[0].value
    assert rig.steps.latest_ts_ms == repeat.ts_ms


def test_a_later_batch_sees_the_stored_state() -> None:
    rig = Rig()
    event = make_event()
    asyncio.run(rig.run(as_messages(event.to_json())))
    asyncio.run(rig.run(as_messages(event.to_json())))
    assert len(asyncio.run(rig.queue.read())) == 1
    assert rig.store.counters == {"wuzhen-cam-01": {"dispatch": 1, "duplicate": 1}}


def test_prune_forgets_groups_past_the_horizon_and_persists_tombstones() -> None:
    rig = Rig()
    old = make_event(track_id=1)
    recent = make_event(track_id=2, ts_ms=EVENT_TS_MS + HORIZON_S * 1000)
    newest = make_event(track_id=3, ts_ms=EVENT_TS_MS + HORIZON_S * 1000 + 1)
    asyncio.run(rig.run(as_messages(old.to_json(), recent.to_json(), newest.to_json())))

    assert asyncio.run(rig.steps.prune()) == 1

    assert sorted(rig.store.groups) == sorted([group_key(recent), group_key(newest)])
    assert rig.store.persisted[-1] == ([StateChange(0, group_key(old), None)], [])
    # Counts per camera are kept: they are totals, not dedup state.
    assert rig.store.counters == {"wuzhen-cam-01": {"dispatch": 3}}
    assert asyncio.run(rig.steps.prune()) == 0


@pytest.mark.parametrize("garbage", [b"", b"{", b"[]"])
def test_a_batch_of_dead_letters_stores_no_state(garbage: bytes) -> None:
    rig = Rig()
    asyncio.run(rig.run(as_messages(garbage)))
    assert rig.store.groups == {}
    assert rig.store.counters == {}
    assert rig.store.persisted == [([], [])]
