import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.common.config.catalogue import load_catalogue
from services.common.events import ViolationEvent, ViolationType
from services.dispatcher.config import DispatchConfig, GroupingSettings, load_dispatch_config
from services.dispatcher.core import (
    MAX_SIGHTINGS,
    DeadLetter,
    DeadLetterReason,
    Dispatch,
    Dispatcher,
    Duplicate,
    GroupState,
    Repeat,
    sightings_key,
)
from tests.events import as_messages, make_event

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Monday 8 January 2024, local time in Wuzhen/Hangzhou.
MONDAY_PEAK_MS = int(datetime(2024, 1, 8, 7, 30, tzinfo=SHANGHAI).timestamp() * 1000)
MONDAY_NOON_MS = int(datetime(2024, 1, 8, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)
SATURDAY_PEAK_MS = int(datetime(2024, 1, 13, 7, 30, tzinfo=SHANGHAI).timestamp() * 1000)
NOW_MS = 1_800_000_000_000


def event(
    *,
    camera_id: str = "wuzhen-cam-01",
    city: str = "wuzhen",
    violation_type: ViolationType = ViolationType.RED_LIGHT,
    track_id: int = 7,
    ts_ms: int = MONDAY_NOON_MS,
    bbox_xywh: tuple[int, int, int, int] = (10, 20, 30, 40),
    tracker_epoch_ms: int | None = None,
    parked_since_ts_ms: int | None = None,
    decided_ts_ms: int | None = None,
) -> ViolationEvent:
    return make_event(
        camera_id=camera_id,
        city=city,
        violation_type=violation_type,
        track_id=track_id,
        ts_ms=ts_ms,
        bbox_xywh=bbox_xywh,
        tracker_epoch_ms=tracker_epoch_ms,
        parked_since_ts_ms=parked_since_ts_ms,
        decided_ts_ms=decided_ts_ms,
    )


def raw(**overrides: Any) -> bytes:
    return event(**overrides).to_json()


@pytest.fixture(scope="module")
def dispatcher() -> Dispatcher:
    return Dispatcher(config=load_dispatch_config(), catalogue=load_catalogue())


def only(d: Dispatcher, data: bytes, state: dict[str, GroupState] | None = None) -> Any:
    (decision,) = d.plan(as_messages(data), state=state or {}, now_ms=NOW_MS).decisions
    return decision


VALID = event().to_dict()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe garbage", DeadLetterReason.NOT_JSON),
        (b"{not json", DeadLetterReason.NOT_JSON),
        (b"[1, 2]", DeadLetterReason.INVALID),
        (b'{"schema": 2, "violation_id": "x"}', DeadLetterReason.UNKNOWN_SCHEMA),
        (json.dumps({**VALID, "frame": "5"}).encode(), DeadLetterReason.INVALID),
        (b'{"violation_id": "x"}', DeadLetterReason.INVALID),
        (b'{"' + b"x" * 70_000 + b'": 1}', DeadLetterReason.TOO_LARGE),
    ],
    ids=["garbage", "truncated", "array", "schema-2", "string-frame", "missing", "huge"],
)
def test_invalid_messages_are_dead_lettered_with_a_reason(
    dispatcher: Dispatcher, data: bytes, reason: DeadLetterReason
) -> None:
    decision = only(dispatcher, data)
    assert isinstance(decision, DeadLetter)
    assert decision.reason is reason


def test_a_new_violation_is_enriched_from_the_catalogue(dispatcher: Dispatcher) -> None:
    data = ViolationEvent.from_dict({**VALID, "lane": 2}).to_json()
    decision = only(dispatcher, data)
    assert isinstance(decision, Dispatch)
    assert decision.catalogued
    assert decision.entry.queue == "wuzhen.town"
    assert decision.entry.fields.to_dict() == {
        **VALID,
        "lane": 2,
        "district": "town",
        "location": "Ziyi Road / Longxiang Avenue",
        "lat": 30.7441,
        "lon": 120.4869,
        "unit": "Tongxiang Traffic Police, Wuzhen Brigade",
        "priority": "high",
        "dispatched_ts_ms": NOW_MS,
    }


def test_an_uncatalogued_camera_is_still_dispatched_as_unknown(dispatcher: Dispatcher) -> None:
    decision = only(dispatcher, raw(camera_id="replay-cam-9"))
    assert isinstance(decision, Dispatch)
    assert not decision.catalogued
    assert decision.entry.queue == "wuzhen.unknown"
    fields = decision.entry.fields
    assert (fields.district, fields.location, fields.unit) == ("unknown", None, None)
    assert fields.priority == "normal"


@pytest.mark.parametrize(
    ("camera_id", "violation_type", "ts_ms", "priority"),
    [
        ("wuzhen-cam-01", ViolationType.RED_LIGHT, MONDAY_PEAK_MS, "urgent"),
        ("wuzhen-cam-01", ViolationType.RED_LIGHT, MONDAY_NOON_MS, "high"),
        ("wuzhen-cam-01", ViolationType.RED_LIGHT, SATURDAY_PEAK_MS, "high"),
        ("hangzhou-cam-01", ViolationType.RED_LIGHT, MONDAY_PEAK_MS, "urgent"),
        ("wuzhen-cam-03", ViolationType.RED_LIGHT, MONDAY_PEAK_MS, "normal"),
        ("wuzhen-cam-04", ViolationType.ILLEGAL_PARKING, MONDAY_NOON_MS, "high"),
        ("wuzhen-cam-02", ViolationType.ILLEGAL_PARKING, MONDAY_NOON_MS, "low"),
        ("wuzhen-cam-01", ViolationType.ILLEGAL_PARKING, MONDAY_PEAK_MS, "normal"),
    ],
)
def test_priority_follows_the_first_matching_rule(
    dispatcher: Dispatcher,
    camera_id: str,
    violation_type: ViolationType,
    ts_ms: int,
    priority: str,
) -> None:
    city = camera_id.split("-", maxsplit=1)[0]
    data = raw(camera_id=camera_id, city=city, violation_type=violation_type, ts_ms=ts_ms)
    decision = only(dispatcher, data)
    assert isinstance(decision, Dispatch)
    assert decision.entry.fields.priority == priority


def test_priority_checks_the_time_of_each_event_not_of_the_first(dispatcher: Dispatcher) -> None:
    # The rules that can match a type and camera are worked out once; the time never is.
    priorities = []
    for ts_ms in (MONDAY_PEAK_MS, MONDAY_NOON_MS, SATURDAY_PEAK_MS, MONDAY_PEAK_MS):
        data = raw(camera_id="wuzhen-cam-01", city="wuzhen", ts_ms=ts_ms)
        decision = only(dispatcher, data)
        assert isinstance(decision, Dispatch)
        priorities.append(decision.entry.fields.priority)
    assert priorities == ["urgent", "high", "high", "urgent"]


def test_routing_per_city() -> None:
    config = DispatchConfig(routing="city")
    d = Dispatcher(config=config, catalogue=load_catalogue())
    decision = only(d, raw(camera_id="hangzhou-cam-02", city="hangzhou"))
    assert isinstance(decision, Dispatch)
    assert decision.entry.queue == "hangzhou"


def test_duplicates_are_dropped_within_a_batch_and_across_state(dispatcher: Dispatcher) -> None:
    first = raw()
    plan = dispatcher.plan(as_messages(first, first), state={}, now_ms=NOW_MS)
    assert [type(d) for d in plan.decisions] == [Dispatch, Duplicate]
    later = dispatcher.plan(as_messages(first), state=plan.groups, now_ms=NOW_MS)
    assert [type(d) for d in later.decisions] == [Duplicate]
    assert later.groups == {}


def test_repeats_in_the_window_are_grouped_on_the_first_entry(dispatcher: Dispatcher) -> None:
    first = event(ts_ms=MONDAY_NOON_MS)
    repeat = event(ts_ms=MONDAY_NOON_MS + 60_000)
    other_track = event(ts_ms=MONDAY_NOON_MS + 60_000, track_id=8)
    plan = dispatcher.plan(
        as_messages(first.to_json(), repeat.to_json(), repeat.to_json(), other_track.to_json()),
        state={},
        now_ms=NOW_MS,
    )
    kinds = [type(d) for d in plan.decisions]
    assert kinds == [Dispatch, Repeat, Duplicate, Dispatch]
    grouped = plan.decisions[1]
    assert isinstance(grouped, Repeat)
    assert (grouped.violation_id, grouped.repeat_id) == (first.violation_id, repeat.violation_id)
    (state,) = (g for g in plan.groups.values() if g.violation_id == first.violation_id)
    assert state.last_ts_ms == repeat.ts_ms


def test_a_repeat_after_the_window_is_a_new_entry(dispatcher: Dispatcher) -> None:
    late = MONDAY_NOON_MS + 601_000
    plan = dispatcher.plan(as_messages(raw(), raw(ts_ms=late)), state={}, now_ms=NOW_MS)
    assert [type(d) for d in plan.decisions] == [Dispatch, Dispatch]


def test_grouping_window_zero_disables_grouping() -> None:
    config = DispatchConfig(grouping=GroupingSettings(window_s=0))
    d = Dispatcher(config=config, catalogue=load_catalogue())
    plan = d.plan(as_messages(raw(), raw(ts_ms=MONDAY_NOON_MS + 1)), state={}, now_ms=NOW_MS)
    assert [type(x) for x in plan.decisions] == [Dispatch, Dispatch]


OLD_RUN_MS, NEW_RUN_MS = MONDAY_NOON_MS - 600_000, MONDAY_NOON_MS - 20_000


def handover_decisions(*events: ViolationEvent, in_one_batch: bool = True) -> list[type]:
    """The decisions for ``events``, planned in one batch or one batch each."""
    d = Dispatcher(config=load_dispatch_config(), catalogue=load_catalogue())
    if in_one_batch:
        messages = as_messages(*(e.to_json() for e in events))
        return [type(x) for x in d.plan(messages, state={}, now_ms=NOW_MS).decisions]
    state: dict[str, GroupState] = {}
    kinds = []
    for e in events:
        plan = d.plan(as_messages(e.to_json()), state=state, now_ms=NOW_MS)
        state |= plan.groups
        kinds += [type(x) for x in plan.decisions]
    return kinds


@pytest.mark.parametrize("in_one_batch", [True, False])
def test_a_vehicle_seen_again_by_the_detector_that_took_the_camera_over_is_a_repeat(
    in_one_batch: bool,
) -> None:
    # The new owner saw the crossing one frame later, a few pixels on, under its own track.
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS, bbox_xywh=(100, 200, 60, 120))
    new = event(
        track_id=40_003,
        tracker_epoch_ms=NEW_RUN_MS,
        ts_ms=old.ts_ms + 200,
        bbox_xywh=(100, 185, 60, 120),
    )
    later_of_new = event(track_id=40_003, tracker_epoch_ms=NEW_RUN_MS, ts_ms=old.ts_ms + 5_000)
    kinds = handover_decisions(old, new, later_of_new, in_one_batch=in_one_batch)
    assert kinds == [Dispatch, Repeat, Repeat]


def test_the_same_id_from_the_next_detector_run_is_a_duplicate() -> None:
    # The detector ids violations by their place in the frame, not by track.
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS)
    new = old.model_copy(update={"track_id": 40_003, "tracker_epoch_ms": NEW_RUN_MS})
    assert handover_decisions(old, new) == [Dispatch, Duplicate]


@pytest.mark.parametrize(
    ("why", "changes"),
    [
        ("one detector run's two vehicles", {"tracker_epoch_ms": OLD_RUN_MS}),
        ("a box that does not overlap", {"bbox_xywh": (300, 200, 60, 120)}),
        ("too long after", {"ts_ms": MONDAY_NOON_MS + 2_001}),
        ("another type", {"violation_type": ViolationType.ILLEGAL_PARKING}),
        ("another camera", {"camera_id": "wuzhen-cam-02"}),
        ("an event that names no run", {"tracker_epoch_ms": None}),
    ],
)
def test_what_is_not_the_same_vehicle_across_a_handover_is_a_new_entry(
    why: str, changes: dict[str, Any]
) -> None:
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS, bbox_xywh=(100, 200, 60, 120))
    fields: dict[str, Any] = {
        "track_id": 40_003,
        "tracker_epoch_ms": NEW_RUN_MS,
        "ts_ms": MONDAY_NOON_MS + 800,
        "bbox_xywh": (100, 200, 60, 120),
    }
    assert handover_decisions(old, event(**(fields | changes))) == [Dispatch, Dispatch], why


def test_a_parked_car_may_be_seen_seconds_apart_across_a_handover() -> None:
    parked = {"violation_type": ViolationType.ILLEGAL_PARKING, "bbox_xywh": (50, 60, 80, 40)}
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS, **parked)
    new = event(track_id=40_003, tracker_epoch_ms=NEW_RUN_MS, ts_ms=old.ts_ms + 3_200, **parked)
    assert handover_decisions(old, new) == [Dispatch, Repeat]
    # The next car on that spot dwells its own max_dwell_s (8 s at least in the shipped
    # scenes) after the first one's report: a vehicle of its own.
    next_car = event(
        track_id=40_009, tracker_epoch_ms=NEW_RUN_MS, ts_ms=old.ts_ms + 8_000, **parked
    )
    assert handover_decisions(old, next_car) == [Dispatch, Dispatch]


# A car reported by the old run, still standing when a new run took the camera over five
# minutes later: the new run learnt it into its background, and reports it when it leaves,
# its 15 s dwell timed from the new run's first frame.
STANDING = {"violation_type": ViolationType.ILLEGAL_PARKING, "bbox_xywh": (50, 60, 80, 40)}


def reported_again(
    *, taken_over_ms: int, timed_after_ms: int = 0, **changes: Any
) -> ViolationEvent:
    """The new run's event; its stay timed from ``timed_after_ms`` after the run began."""
    fields: dict[str, Any] = STANDING | {
        "track_id": 40_003,
        "tracker_epoch_ms": taken_over_ms,
        "parked_since_ts_ms": taken_over_ms + timed_after_ms,
        "ts_ms": taken_over_ms + 15_000,
    }
    return event(**fields | changes)


@pytest.mark.parametrize("in_one_batch", [True, False])
def test_a_car_parked_through_a_handover_is_counted_on_the_old_runs_entry(
    in_one_batch: bool,
) -> None:
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS, **STANDING)
    new = reported_again(taken_over_ms=old.ts_ms + 300_000)
    assert handover_decisions(old, new, in_one_batch=in_one_batch) == [Dispatch, Repeat]


@pytest.mark.parametrize(
    ("why", "taken_over_after_ms", "changes"),
    [
        ("another place", 300_000, {"bbox_xywh": (300, 60, 80, 40)}),
        ("its stay timed from after its run began", 300_000, {"timed_after_ms": 1}),
        ("a run begun over grouping.window_s after the entry", 601_000, {}),
    ],
)
def test_what_is_not_a_car_parked_through_a_handover_is_a_new_entry(
    why: str, taken_over_after_ms: int, changes: dict[str, Any]
) -> None:
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS, **STANDING)
    new = reported_again(taken_over_ms=old.ts_ms + taken_over_after_ms, **changes)
    assert handover_decisions(old, new) == [Dispatch, Dispatch], why


@pytest.mark.parametrize("reported_after_ms", [3_000, 7_000, 9_000, 15_000])
def test_a_car_the_old_run_reported_after_the_new_run_began_is_the_same(
    reported_after_ms: int,
) -> None:
    """The runs overlap (the new one warms up on the frames before the takeover): the old
    run may report the car seconds after the new run's first frame, while the new run saw
    that place taken from its first frame until the car left."""
    taken_over_ms = MONDAY_NOON_MS
    old = event(
        track_id=12_007,
        tracker_epoch_ms=OLD_RUN_MS,
        ts_ms=taken_over_ms + reported_after_ms,
        **STANDING,
    )
    new = reported_again(taken_over_ms=taken_over_ms, decided_ts_ms=taken_over_ms + 60_000)
    assert handover_decisions(old, new) == [Dispatch, Repeat]


def test_parking_entries_are_kept_for_the_grouping_window_while_others_come_in() -> None:
    # Another car's entry at another place in between prunes the camera's sightings.
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS, **STANDING)
    elsewhere = event(
        track_id=12_040,
        tracker_epoch_ms=OLD_RUN_MS,
        ts_ms=old.ts_ms + 200_000,
        violation_type=ViolationType.ILLEGAL_PARKING,
        bbox_xywh=(400, 60, 80, 40),
    )
    new = reported_again(taken_over_ms=old.ts_ms + 300_000)
    assert handover_decisions(old, elsewhere, new) == [Dispatch, Dispatch, Repeat]


def test_a_car_parked_where_an_entry_was_made_before_the_handover_counts_on_that_entry() -> None:
    """A known limit (README, *Handover twins*): the old run reported car A; A left and car
    B parked on the same spot, under max_dwell_s before the takeover, so only the new run
    reports B, when it leaves. Nothing in the two runs' events tells B from A standing on,
    so B is counted on A's entry."""
    old = event(track_id=12_007, tracker_epoch_ms=OLD_RUN_MS, **STANDING)
    car_b = reported_again(taken_over_ms=old.ts_ms + 120_000)
    assert handover_decisions(old, car_b) == [Dispatch, Repeat]


def test_a_camera_keeps_only_its_latest_sightings() -> None:
    d = Dispatcher(config=load_dispatch_config(), catalogue=load_catalogue())
    events = [
        event(track_id=i, tracker_epoch_ms=OLD_RUN_MS, ts_ms=MONDAY_NOON_MS + i * 100)
        for i in range(MAX_SIGHTINGS + 3)
    ]
    plan = d.plan(as_messages(*(e.to_json() for e in events)), state={}, now_ms=NOW_MS)
    seen = plan.groups[sightings_key(events[0])]
    assert [s.violation_id for s in seen.sightings] == [
        e.violation_id for e in events[-MAX_SIGHTINGS:]
    ]
    assert GroupState.from_dict(seen.to_dict()) == seen


def test_state_round_trips_and_expires(dispatcher: Dispatcher) -> None:
    plan = dispatcher.plan(as_messages(raw()), state={}, now_ms=NOW_MS)
    (state,) = plan.groups.values()
    assert GroupState.from_dict(state.to_dict()) == state
    horizon_ms = int(dispatcher.config.dedup_horizon_s * 1000)
    assert not dispatcher.expired(state, latest_ts_ms=state.last_ts_ms + horizon_ms)
    assert dispatcher.expired(state, latest_ts_ms=state.last_ts_ms + horizon_ms + 1)


PARKED = (400, 300, 120, 60)


@pytest.mark.parametrize(
    ("bbox_xywh", "second"),
    [
        ((404, 302, 118, 60), Repeat),  # the same stay, seen again (a detector's restart)
        ((100, 300, 120, 60), Dispatch),  # parked again elsewhere, or another vehicle
    ],
)
def test_a_tracks_second_parking_violation_is_a_repeat_only_at_the_same_place(
    dispatcher: Dispatcher, bbox_xywh: tuple[int, int, int, int], second: type
) -> None:
    parking = ViolationType.ILLEGAL_PARKING
    first = event(violation_type=parking, bbox_xywh=PARKED)
    again = event(violation_type=parking, bbox_xywh=bbox_xywh, ts_ms=MONDAY_NOON_MS + 30_000)
    plan = dispatcher.plan(as_messages(first.to_json(), again.to_json()), state={}, now_ms=NOW_MS)
    assert [type(d) for d in plan.decisions] == [Dispatch, second]
    # Its state keeps the place, and a group stored before groups knew it keeps grouping.
    (group,) = (g for g in plan.groups.values() if not g.sightings)
    assert GroupState.from_dict(group.to_dict()) == group
    assert group.bbox_xywh in (PARKED, bbox_xywh)
    old = GroupState.from_dict({k: v for k, v in group.to_dict().items() if k != "bbox_xywh"})
    later = event(violation_type=parking, bbox_xywh=(0, 0, 10, 10), ts_ms=MONDAY_NOON_MS + 60_000)
    key = next(k for k, g in plan.groups.items() if g == group)
    assert type(only(dispatcher, later.to_json(), {key: old})) is Repeat


def test_a_redelivered_entry_of_a_track_that_parked_elsewhere_is_still_a_duplicate(
    dispatcher: Dispatcher,
) -> None:
    parking = ViolationType.ILLEGAL_PARKING
    first = event(violation_type=parking, bbox_xywh=PARKED)
    elsewhere = event(violation_type=parking, bbox_xywh=(0, 0, 50, 30), ts_ms=first.ts_ms + 9_000)
    messages = as_messages(first.to_json(), elsewhere.to_json(), first.to_json())
    plan = dispatcher.plan(messages, state={}, now_ms=NOW_MS)
    assert [type(d) for d in plan.decisions] == [Dispatch, Dispatch, Duplicate]
