"""The dispatch steps, written once, whatever bus the messages come from.

A batch is planned by the pure core, then carried out: dead letters are sent, entries and
repeats are written to the control-center queue, and only then is the batch's state stored
(group state, and every camera's count of outcomes). Two seams keep this independent of the
transport:

- a :class:`StateStore`: faust's changelogged tables on Kafka (``app.py``), or plain dicts
  for the embedded loop (:class:`DictStore`);
- a :class:`DeadLetterSink`: faust's dead-letter topic, or the bus's
  (``bus_worker.py``).

Both loops, the faust worker's and the embedded one, run :class:`DispatchSteps` through
:func:`~services.dispatcher.writer.write_in_order`, and prune expired state on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from services.common.bus import Headers
from services.common.queue import ControlCenterQueue
from services.dispatcher.core import DeadLetter, Dispatcher, GroupState, Plan
from services.dispatcher.executor import PlanExecutor
from services.dispatcher.metrics import DispatcherMetrics

log = logging.getLogger(__name__)


class SourceMessage(Protocol):
    """A consumed message, from faust or from the bus: what the steps read of it."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


MessageT = TypeVar("MessageT", bound=SourceMessage)


@dataclass(frozen=True, slots=True)
class StateChange:
    """One key of a state store changed, to be stored in ``partition``; ``value`` None
    deletes it (a tombstone)."""

    partition: int
    key: str
    value: Mapping[str, Any] | None


class StateStore(Protocol):
    """Where group state and per-camera outcome counts live, as JSON-ready dicts."""

    @property
    def groups(self) -> MutableMapping[str, Any]:
        """Group state by group key: ``GroupState.to_dict()`` plus its ``partition``."""

    @property
    def counters(self) -> MutableMapping[str, Any]:
        """Outcome counts by camera id: ``{"dispatch": 3, "repeat": 1, ...}``."""

    async def persist(
        self, *, groups: Sequence[StateChange], counters: Sequence[StateChange]
    ) -> list[Awaitable[Any]]:
        """Make changes already applied to the mappings durable; returns their deliveries."""


class DeadLetterSink(Protocol):
    async def send(self, message: SourceMessage, *, headers: Headers) -> Awaitable[Any]:
        """Send ``message``'s original key and value with ``headers``; returns its delivery."""


class DictStore:
    """State in dicts: enough for one process whose bus lives as long as it does."""

    def __init__(self) -> None:
        self.groups: dict[str, Any] = {}
        self.counters: dict[str, Any] = {}

    async def persist(
        self, *, groups: Sequence[StateChange], counters: Sequence[StateChange]
    ) -> list[Awaitable[Any]]:
        """Nothing outlives the process, so nothing is sent anywhere."""
        return []


class GroupTableView(Mapping[str, GroupState]):
    """The core's read-only view of a store's groups (JSON dicts).

    ``newer`` holds the groups of a batch still being written, not in the store yet; they
    are read first.
    """

    def __init__(self, store: Mapping[str, Any], *, newer: Mapping[str, GroupState]) -> None:
        self._store = store
        self._newer = newer

    def __getitem__(self, key: str) -> GroupState:
        group: GroupState | None = self.get(key)
        if group is None:
            raise KeyError(key)
        return group

    def get(self, key: str, default: Any = None) -> Any:
        # Most keys are new: Mapping.get would raise and catch a KeyError for each of them.
        group = self._newer.get(key)
        if group is not None:
            return group
        value = self._store.get(key)
        return default if value is None else GroupState.from_dict(value)

    def __iter__(self) -> Iterator[str]:
        yield from self._newer
        yield from (key for key in self._store if key not in self._newer)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class DispatchSteps(Generic[MessageT]):
    """Plans a batch and carries out its plan: dead letters, queue writes, stored state."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        queue: ControlCenterQueue,
        metrics: DispatcherMetrics,
        store: StateStore,
        dead_letters: DeadLetterSink,
    ) -> None:
        self._dispatcher = dispatcher
        self._executor = PlanExecutor(
            queue=queue, metrics=metrics, retry=dispatcher.config.redis_retry
        )
        self._metrics = metrics
        self._store = store
        self._dead_letters = dead_letters
        # The newest detection time seen: the clock that expires old group state.
        self.latest_ts_ms = 0
        # Batches and the prune timer both change state and persist it; each does so whole.
        self._state_lock = asyncio.Lock()

    @property
    def executor(self) -> PlanExecutor:
        """Where the queue writes go; its ``stop()`` ends a retry that waits for the queue."""
        return self._executor

    def plan(
        self, messages: Sequence[MessageT], *, newer: Mapping[str, GroupState]
    ) -> Plan[MessageT]:
        self._metrics.events.inc(len(messages))
        return self._dispatcher.plan(
            messages,
            state=GroupTableView(self._store.groups, newer=newer),
            now_ms=int(time.time() * 1000),
        )

    async def write(self, plan: Plan[MessageT]) -> list[Awaitable[Any]]:
        deliveries = [
            await self._dead_letter(decided.message, decided.decision)
            for decided in plan.decided
            if isinstance(decided.decision, DeadLetter)
        ]
        await self._executor.write_entries(plan)
        await self._executor.write_repeats(plan)
        # Only now: state that says "handled" must never be stored before the entries it
        # stands for are in the queue, or a crash in between would lose them.
        async with self._state_lock:
            deliveries += await self._store_state(plan)
        return deliveries

    async def _dead_letter(self, message: MessageT, decision: DeadLetter) -> Awaitable[Any]:
        headers = self._executor.dead_letter(
            decision, topic=message.topic, partition=message.partition, offset=message.offset
        )
        return await self._dead_letters.send(message, headers=headers)

    async def _store_state(self, plan: Plan[MessageT]) -> list[Awaitable[Any]]:
        """Store changed state beside its source message (the same partition number)."""
        store = self._store
        group_changes = []
        for key, group in plan.groups.items():
            partition = plan.group_sources[key].partition
            value = {**group.to_dict(), "partition": partition}
            store.groups[key] = value
            group_changes.append(StateChange(partition, key, value))
            self.latest_ts_ms = max(self.latest_ts_ms, group.last_ts_ms)
        counter_changes = [
            StateChange(partition, camera_id, store.counters[camera_id])
            for camera_id, partition in self._count_per_camera(plan).items()
        ]
        return await store.persist(groups=group_changes, counters=counter_changes)

    def _count_per_camera(self, plan: Plan[MessageT]) -> dict[str, int]:
        """Count the batch's outcomes per camera; returns the cameras touched, by partition."""
        counters = self._store.counters
        touched: dict[str, int] = {}
        for decided in plan.decided:
            decision = decided.decision
            if isinstance(decision, DeadLetter):
                continue
            counts = counters.get(decision.camera_id) or {}
            outcome = type(decision).__name__.lower()
            counters[decision.camera_id] = {**counts, outcome: counts.get(outcome, 0) + 1}
            touched[decision.camera_id] = decided.message.partition
        return touched

    async def prune(self) -> int:
        """Forget groups older than the dedup horizon; returns how many were dropped."""
        async with self._state_lock:
            groups = self._store.groups
            expired = [
                StateChange(value["partition"], key, None)
                for key, value in list(groups.items())
                if self._dispatcher.expired(
                    GroupState.from_dict(value), latest_ts_ms=self.latest_ts_ms
                )
            ]
            for change in expired:
                del groups[change.key]
            # Tombstones, so that compaction drops the keys and recovery stays short.
            await self._store.persist(groups=expired, counters=[])
        if expired:
            log.info("dropped %d expired dedup/grouping states", len(expired))
        return len(expired)
