"""The pure dispatch core: raw message bytes in, at most one control-center entry out.

Each message goes through the same stages, in this order::

    validate → dedup → enrich → priority → route → group

There is no Kafka, Redis or wall clock in here. The caller passes its messages (anything
with a ``value``: they are carried, never looked into otherwise), the dedup/grouping state it
holds (a faust table or a dict) and the dispatch time, and gets back each message with its
:data:`Decision`, plus the state to store once the decisions are carried out.

>>> from services.common.bus import BusMessage
>>> from services.common.config.catalogue import load_catalogue
>>> from services.dispatcher.config import DispatchConfig
>>> dispatcher = Dispatcher(config=DispatchConfig(), catalogue=load_catalogue())
>>> message = BusMessage(topic="violations", partition=0, offset=7, key=None, value=b"{")
>>> (decided,) = dispatcher.plan([message], state={}, now_ms=0).decided
>>> decided.message.offset, decided.decision.reason.value
(7, 'not_json')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from services.common.boxes import box_iou
from services.common.config.catalogue import Catalogue
from services.common.events import ViolationEvent, ViolationType, parse_event
from services.common.queue import DispatchedEntry, PendingEntry
from services.dispatcher.config import DispatchConfig, PeakWindow, Priority, PriorityRule

UNKNOWN_DISTRICT = "unknown"

# A group remembers the ids of its latest repeats so that a redelivered repeat is dropped
# here rather than in Redis. A vehicle repeating more often than this inside one window is
# still counted once per id by the queue's idempotent ``record_repeat``.
MAX_IDS_PER_GROUP = 64
# Boxes of one vehicle seen by two detector runs a frame or two apart overlap at least this
# much; two vehicles side by side in their lanes do not overlap at all.
HANDOVER_MIN_IOU = 0.1
# A parked vehicle's box, seen again, overlaps the first at least this much.
SAME_PLACE_MIN_IOU = 0.1
# The entries a camera's sightings keep for each type, newest last.
MAX_SIGHTINGS = 16


class DeadLetterReason(StrEnum):
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    UNKNOWN_SCHEMA = "unknown_schema"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Sighting:
    """An entry's violation as the detector run that reported it saw it."""

    violation_id: str
    ts_ms: int
    bbox_xywh: tuple[int, int, int, int]
    tracker_epoch_ms: int

    def same_vehicle_from_another_run(
        self, event: ViolationEvent, *, handover_ms: int, lookback_ms: int
    ) -> bool:
        """Whether ``event`` is this violation as another detector run of the camera saw it:
        its box overlapping, and within ``handover_ms`` of it; or, for a vehicle parked
        there since the event's run began, reported from ``lookback_ms`` before that run's
        first frame until the event was decided (the new run learnt the standing car into
        its background, found it only when it left, and saw the place taken throughout)."""
        epoch = event.tracker_epoch_ms
        if (
            epoch is None
            or epoch == self.tracker_epoch_ms
            or box_iou(event.bbox_xywh, self.bbox_xywh) < HANDOVER_MIN_IOU
        ):
            return False
        if abs(event.ts_ms - self.ts_ms) <= handover_ms:
            return True
        decided_ms = event.decided_ts_ms or event.ts_ms
        return (
            event.parked_since_run_start
            and epoch - lookback_ms <= self.ts_ms <= decided_ms + handover_ms
        )


@dataclass(frozen=True, slots=True)
class GroupState:
    """What the dispatcher remembers about one vehicle (track) at one camera for one type.

    ``violation_id`` names the entry that the group's repeats are counted on, and
    ``recent_ids`` are the ids already handled, newest last, for dedup. The state under a
    camera's :func:`sightings_key` keeps, in ``sightings``, the entries of the last moments
    instead, for an event from another detector run to be matched to.
    """

    violation_id: str
    last_ts_ms: int
    recent_ids: tuple[str, ...]
    sightings: tuple[Sighting, ...] = ()
    # Where the entry's vehicle was, for a parking group (see ``Dispatcher.decide``).
    bbox_xywh: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "violation_id": self.violation_id,
            "last_ts_ms": self.last_ts_ms,
            "recent_ids": list(self.recent_ids),
        }
        if self.bbox_xywh is not None:
            out["bbox_xywh"] = list(self.bbox_xywh)
        if self.sightings:
            out["sightings"] = [
                [s.violation_id, s.ts_ms, list(s.bbox_xywh), s.tracker_epoch_ms]
                for s in self.sightings
            ]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupState:
        return cls(
            violation_id=str(data["violation_id"]),
            last_ts_ms=int(data["last_ts_ms"]),
            recent_ids=tuple(str(i) for i in data["recent_ids"]),
            # State stored before sightings existed has none.
            sightings=tuple(
                Sighting(str(vid), int(ts), _box(box), int(epoch))
                for vid, ts, box, epoch in data.get("sightings", ())
            ),
            # And before groups knew their place.
            bbox_xywh=_box(data["bbox_xywh"]) if "bbox_xywh" in data else None,
        )


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Append ``entry``: a violation seen for the first time."""

    entry: PendingEntry
    camera_id: str
    catalogued: bool
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Repeat:
    """Count ``repeat_id`` on the existing entry ``violation_id``; create nothing."""

    violation_id: str
    repeat_id: str
    camera_id: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Drop: this violation id was handled already."""

    violation_id: str
    camera_id: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Send the original bytes to the dead-letter topic with ``reason`` and ``detail``."""

    reason: DeadLetterReason
    detail: str


Decision = Dispatch | Repeat | Duplicate | DeadLetter


class Carrier(Protocol):
    """A message as the core sees it: its value, and nothing else."""

    @property
    def value(self) -> bytes | None: ...


MessageT = TypeVar("MessageT", bound=Carrier)


@dataclass(frozen=True, slots=True)
class Decided(Generic[MessageT]):
    """One message and what the core decided for it."""

    message: MessageT
    decision: Decision


@dataclass(slots=True)
class Plan(Generic[MessageT]):
    """The decided messages of a batch, in input order, and the group state they leave.

    ``group_sources`` names, for each changed group, the message that last changed it, so
    that the caller can store the state beside that message (in its partition).
    """

    decided: list[Decided[MessageT]] = field(default_factory=list)
    groups: dict[str, GroupState] = field(default_factory=dict)
    group_sources: dict[str, MessageT] = field(default_factory=dict)

    @property
    def decisions(self) -> list[Decision]:
        """The decisions alone, in input order."""
        return [decided.decision for decided in self.decided]


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a camera stands, from the catalogue; all None/unknown for an uncatalogued one."""

    city: str
    district: str
    location: str | None
    lat: float | None
    lon: float | None
    unit: str | None
    tags: frozenset[str]
    timezone: str


def sightings_key(event: ViolationEvent) -> str:
    """Where a camera's recent entries of one type are kept: :func:`group_key` without the
    track."""
    return f"{event.camera_id}|{event.type.value}"


def group_key(event: ViolationEvent) -> str:
    """The Alertmanager-style grouping key: same vehicle, camera and type.

    >>> e = ViolationEvent.from_dict({"violation_id": "v", "type": "red_light",
    ...     "camera_id": "wuzhen-cam-01", "city": "wuzhen", "frame": 1, "ts_ms": 1,
    ...     "track_id": 7, "bbox_xywh": [0, 0, 1, 1], "confidence": 0.5})
    >>> group_key(e), sightings_key(e)
    ('wuzhen-cam-01|red_light|7', 'wuzhen-cam-01|red_light')
    """
    return f"{sightings_key(event)}|{event.track_id}"


def _place(
    kind: ViolationType, bbox_xywh: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    """What a group keeps of where its vehicle was: a parked one's box; nothing for a red
    light, which is crossed once."""
    return bbox_xywh if kind is ViolationType.ILLEGAL_PARKING else None


def _box(values: Sequence[Any]) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in values)
    return (x, y, w, h)


def _parked_elsewhere(group: GroupState, event: ViolationEvent) -> bool:
    """Whether a parking event of the group's track is at another place than its entry.

    A vehicle that parks again somewhere else is a violation of its own, with its own place
    to go to; and a detector's track that took over another vehicle (one coming in over
    the picture's edge where this one drove out) must not hide that vehicle's violation as
    a repeat. The same stay seen again (a detector's restart) is at the same place.
    """
    return group.bbox_xywh is not None and (
        box_iou(group.bbox_xywh, event.bbox_xywh) < SAME_PLACE_MIN_IOU
    )


def parse(raw: bytes, *, max_bytes: int) -> ViolationEvent | DeadLetter:
    """Validate one message value against the event schema."""
    if len(raw) > max_bytes:
        return DeadLetter(DeadLetterReason.TOO_LARGE, f"{len(raw)} bytes > {max_bytes}")
    parsed = parse_event(raw)
    if isinstance(parsed, ViolationEvent):
        return parsed
    return DeadLetter(DeadLetterReason(parsed.reason.value), "; ".join(parsed.problems))


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def in_peak_hours(ts_ms: int, *, windows: Sequence[PeakWindow], timezone: str) -> bool:
    """Whether the detection time falls in one of ``windows``, in the city's local time."""
    local = datetime.fromtimestamp(ts_ms / 1000, tz=_zone(timezone))
    now = local.time()
    weekday = local.isoweekday() <= 5
    return any(w.start <= now < w.end and (weekday or not w.weekdays_only) for w in windows)


def _matches_always(rule: PriorityRule, event: ViolationEvent, *, tags: frozenset[str]) -> bool:
    """Whether ``rule`` holds for ``event`` and ``tags``, whatever the time of day."""
    return (not rule.types or event.type in rule.types) and (
        not rule.camera_tags or not tags.isdisjoint(rule.camera_tags)
    )


class Dispatcher:
    """Turns violation messages into control-center decisions under one dispatch config."""

    def __init__(self, *, config: DispatchConfig, catalogue: Catalogue) -> None:
        self.config = config
        self._places: dict[str, _Place] = {}
        self._timezones: dict[str, str] = {}
        for city_key, city in catalogue.cities.items():
            self._timezones[city_key] = city.timezone
            for camera in city.cameras:
                self._places[camera.camera_id] = _Place(
                    city=city_key,
                    district=camera.district,
                    location=camera.location,
                    lat=camera.lat,
                    lon=camera.lon,
                    unit=city.districts[camera.district].unit,
                    tags=frozenset(camera.tags),
                    timezone=city.timezone,
                )
        # The rules that can match each violation type and camera tag set, first to last, as
        # (peak hours condition, priority): only the time of day is left to check per event.
        self._candidate_rules: dict[
            tuple[str, frozenset[str]], tuple[tuple[bool | None, Priority], ...]
        ] = {}
        self._window_ms = int(config.grouping.window_s * 1000)
        self._horizon_ms = int(config.dedup_horizon_s * 1000)
        self._handover_ms = {t: int(s * 1000) for t, s in config.grouping.handover_s.items()}
        # How long a camera's entries are kept as sightings: a parked car's for the grouping
        # window, since a run that took over while it stood reports it only when it leaves.
        self._sightings_ms = {
            kind: max(ms, self._window_ms) if kind is ViolationType.ILLEGAL_PARKING else ms
            for kind, ms in self._handover_ms.items()
        }

    def plan(
        self, messages: Sequence[MessageT], *, state: Mapping[str, GroupState], now_ms: int
    ) -> Plan[MessageT]:
        """Decide every message of a batch, in order; later ones see earlier ones' state.

        ``state`` is only read. ``plan.groups`` holds the group states to write back once
        the decisions have been carried out, so that a crash before then forgets nothing.
        """
        out: Plan[MessageT] = Plan()
        for message in messages:
            parsed = parse(message.value or b"", max_bytes=self.config.max_event_bytes)
            if isinstance(parsed, DeadLetter):
                out.decided.append(Decided(message, parsed))
                continue
            key, seen_key = group_key(parsed), sightings_key(parsed)
            seen = out.groups.get(seen_key) or state.get(seen_key)
            previous = out.groups.get(key) or state.get(key) or self._handed_over(parsed, seen)
            decision, group = self.decide(parsed, group=previous, now_ms=now_ms)
            out.decided.append(Decided(message, decision))
            if group is not None:
                out.groups[key] = group
                out.group_sources[key] = message
            if isinstance(decision, Dispatch) and (sighted := self._sighted(parsed, seen)):
                out.groups[seen_key] = sighted
                out.group_sources[seen_key] = message
        return out

    def _handed_over(self, event: ViolationEvent, seen: GroupState | None) -> GroupState | None:
        """The group of the entry that another detector run of the camera made for this
        event's vehicle, if any: a vehicle new to this track may be old to the camera."""
        handover_ms = self._handover_ms.get(event.type)
        epoch = event.tracker_epoch_ms
        if seen is None or handover_ms is None or epoch is None:
            return None
        # Almost always every sighting is this run's own: that is checked first, cheaply.
        others = [s for s in seen.sightings if s.tracker_epoch_ms != epoch]
        for sighting in reversed(others):
            if sighting.same_vehicle_from_another_run(
                event, handover_ms=handover_ms, lookback_ms=self._window_ms
            ):
                return GroupState(
                    violation_id=sighting.violation_id,
                    # This run has seen the vehicle standing since it began timing it.
                    last_ts_ms=max(sighting.ts_ms, event.parked_since_ts_ms or 0),
                    recent_ids=(sighting.violation_id,),
                    bbox_xywh=_place(event.type, sighting.bbox_xywh),
                )
        return None

    def _sighted(self, event: ViolationEvent, seen: GroupState | None) -> GroupState | None:
        """The camera's sightings with this new entry's event added, the stale ones dropped;
        None when the event cannot be matched across runs anyway."""
        kept_ms = self._sightings_ms.get(event.type)
        if event.tracker_epoch_ms is None or kept_ms is None:
            return None
        ts_ms = event.ts_ms
        kept = [s for s in (seen.sightings if seen else ()) if ts_ms - s.ts_ms <= kept_ms]
        kept.append(Sighting(event.violation_id, ts_ms, event.bbox_xywh, event.tracker_epoch_ms))
        return GroupState(
            violation_id=event.violation_id,
            # What was dropped is older than this event: the newest time is one of the two.
            last_ts_ms=max(seen.last_ts_ms, ts_ms) if seen else ts_ms,
            recent_ids=(),
            sightings=tuple(kept[-MAX_SIGHTINGS:]),
        )

    def decide(
        self, event: ViolationEvent, *, group: GroupState | None, now_ms: int
    ) -> tuple[Decision, GroupState | None]:
        """Dedup, then group, then build the entry; returns the group's new state, if any."""
        vid = event.violation_id
        if group is not None and vid in group.recent_ids:
            return Duplicate(violation_id=vid, camera_id=event.camera_id), None
        ids = (*group.recent_ids, vid)[-MAX_IDS_PER_GROUP:] if group is not None else (vid,)
        if (
            group is not None
            and self._within_window(group, event.ts_ms)
            and not _parked_elsewhere(group, event)
        ):
            repeat = Repeat(
                violation_id=group.violation_id,
                repeat_id=vid,
                camera_id=event.camera_id,
                ts_ms=event.ts_ms,
            )
            last = max(group.last_ts_ms, event.ts_ms)
            return repeat, GroupState(
                violation_id=group.violation_id,
                last_ts_ms=last,
                recent_ids=ids,
                bbox_xywh=group.bbox_xywh,
            )
        # The ids the group had handled stay known, so a redelivery of them is a duplicate.
        return self.dispatch(event, now_ms=now_ms), GroupState(
            violation_id=vid,
            last_ts_ms=event.ts_ms,
            recent_ids=ids,
            bbox_xywh=_place(event.type, event.bbox_xywh),
        )

    def _within_window(self, group: GroupState, ts_ms: int) -> bool:
        return self._window_ms > 0 and abs(ts_ms - group.last_ts_ms) <= self._window_ms

    def dispatch(self, event: ViolationEvent, *, now_ms: int) -> Dispatch:
        """Enrich, prioritise and route a new violation into its control-center entry."""
        place = self._places.get(event.camera_id)
        catalogued = place is not None
        if place is None:
            place = _Place(
                city=event.city,
                district=UNKNOWN_DISTRICT,
                location=None,
                lat=None,
                lon=None,
                unit=None,
                tags=frozenset(),
                timezone=self._timezones.get(event.city, self.config.priorities.fallback_timezone),
            )
        fields = DispatchedEntry.enrich(
            event,
            district=place.district,
            location=place.location,
            lat=place.lat,
            lon=place.lon,
            unit=place.unit,
            priority=self.priority(event, tags=place.tags, timezone=place.timezone).value,
            dispatched_ts_ms=now_ms,
        )
        return Dispatch(
            entry=PendingEntry(fields=fields, queue=self.route(place)),
            camera_id=event.camera_id,
            catalogued=catalogued,
            ts_ms=event.ts_ms,
        )

    def priority(self, event: ViolationEvent, *, tags: frozenset[str], timezone: str) -> Priority:
        """The first matching rule's priority, else the default."""
        settings = self.config.priorities
        candidates = self._candidate_rules.get((event.type, tags))
        if candidates is None:
            candidates = self._candidate_rules[(event.type, tags)] = tuple(
                (rule.peak_hours, rule.priority)
                for rule in settings.rules
                if _matches_always(rule, event, tags=tags)
            )
        peak: bool | None = None
        for peak_hours, priority in candidates:
            if peak_hours is None:
                return priority
            if peak is None:
                peak = in_peak_hours(event.ts_ms, windows=settings.peak_hours, timezone=timezone)
            if peak == peak_hours:
                return priority
        return settings.default

    def route(self, place: _Place) -> str:
        """The queue name: ``city`` or ``city.district``, as the config says."""
        if self.config.routing == "city":
            return place.city
        return f"{place.city}.{place.district}"

    def expired(self, group: GroupState, *, latest_ts_ms: int) -> bool:
        """Whether a group is older than the dedup horizon and can be forgotten."""
        return latest_ts_ms - group.last_ts_ms > self._horizon_ms
