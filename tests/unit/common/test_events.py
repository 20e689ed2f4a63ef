import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.events import (
    EventValidationError,
    ViolationEvent,
    ViolationType,
    make_violation_id,
)

VALID = {
    "schema": 1,
    "violation_id": "wuzhen-cam-01:red_light:000123:1700000000000",
    "type": "red_light",
    "camera_id": "wuzhen-cam-01",
    "city": "wuzhen",
    "frame": 1234,
    "ts_ms": 1700000000000,
    "track_id": 123,
    "bbox_xywh": [512, 280, 64, 116],
    "confidence": 0.93,
    "snapshot": "evidence/wuzhen-cam-01/x.jpg",
}


def test_contract_example_parses_and_round_trips_exactly() -> None:
    event = ViolationEvent.from_json(json.dumps(VALID))
    assert event.type is ViolationType.RED_LIGHT
    assert json.loads(event.to_json()) == VALID


def test_unknown_extra_fields_are_kept() -> None:
    raw = {**VALID, "plate": "浙A12345", "nested": {"lane": 2}}
    assert ViolationEvent.from_dict(raw).to_dict() == raw


def test_the_detectors_optional_fields_round_trip_and_are_left_out_when_unset() -> None:
    raw = {
        **VALID,
        "tracker_epoch_ms": 1699999990000,
        "decided_ts_ms": 1700000000800,
        "parked_since_ts_ms": 1699999990000,
    }
    event = ViolationEvent.from_dict(raw)
    assert (event.tracker_epoch_ms, event.decided_ts_ms) == (1699999990000, 1700000000800)
    assert event.parked_since_ts_ms == 1699999990000
    assert event.to_dict() == raw
    assert ViolationEvent.from_dict(VALID).to_dict() == VALID
    # Only a parking violation's stay can have begun before its run did.
    assert not event.parked_since_run_start
    parked = ViolationEvent.from_dict({**raw, "type": "illegal_parking"})
    assert parked.parked_since_run_start


def test_snapshot_may_be_null() -> None:
    assert ViolationEvent.from_dict({**VALID, "snapshot": None}).snapshot is None


def test_violation_id_is_deterministic() -> None:
    kwargs = {
        "camera_id": "hangzhou-cam-02",
        "violation_type": ViolationType.ILLEGAL_PARKING,
        "track_id": 7,
        "ts_ms": 1700000001234,
    }
    assert make_violation_id(**kwargs) == make_violation_id(**kwargs)  # type: ignore[arg-type]
    assert make_violation_id(**kwargs) == "hangzhou-cam-02:illegal_parking:000007:1700000001234"  # type: ignore[arg-type]


def test_create_builds_the_id() -> None:
    event = ViolationEvent.create(
        violation_type=ViolationType.RED_LIGHT,
        camera_id="wuzhen-cam-01",
        city="wuzhen",
        frame=1234,
        ts_ms=1700000000000,
        track_id=123,
        bbox_xywh=(512, 280, 64, 116),
        confidence=0.93,
        snapshot="evidence/wuzhen-cam-01/x.jpg",
    )
    assert event.to_dict() == VALID


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"frame": "1234"}, "frame"),
        ({"frame": -1}, "frame"),
        ({"type": "speeding"}, "type"),
        ({"schema": 2}, "schema"),
        ({"camera_id": "Wuzhen Cam"}, "camera_id"),
        ({"bbox_xywh": [1, 2, 3]}, "bbox_xywh"),
        ({"confidence": 1.5}, "confidence"),
        ({"ts_ms": 1.5}, "ts_ms"),
        ({"track_id": None}, "track_id"),
    ],
)
def test_mistyped_field_is_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(EventValidationError) as info:
        ViolationEvent.from_dict({**VALID, **change})
    assert any(p.startswith(field) for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("field", ["violation_id", "type", "camera_id", "frame", "ts_ms"])
def test_missing_required_field_is_named(field: str) -> None:
    data = {k: v for k, v in VALID.items() if k != field}
    with pytest.raises(EventValidationError, match=field):
        ViolationEvent.from_dict(data)


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"not json", b"[1, 2]", b"null"])
def test_garbage_bytes_give_a_clear_error(raw: bytes) -> None:
    with pytest.raises(EventValidationError, match="invalid violation event"):
        ViolationEvent.from_json(raw)


@given(
    frame=st.integers(min_value=0, max_value=10**9),
    track_id=st.integers(min_value=0, max_value=10**6),
    xywh=st.tuples(*[st.integers(min_value=0, max_value=10_000)] * 4),
    confidence=st.floats(min_value=0, max_value=1),
    extra=st.dictionaries(st.text(min_size=1).filter(lambda k: k not in VALID), st.integers()),
)
def test_json_round_trip_property(
    frame: int,
    track_id: int,
    xywh: tuple[int, int, int, int],
    confidence: float,
    extra: dict[str, int],
) -> None:
    data = {
        **VALID,
        "frame": frame,
        "track_id": track_id,
        "bbox_xywh": list(xywh),
        "confidence": confidence,
        **extra,
    }
    event = ViolationEvent.from_dict(data)
    assert ViolationEvent.from_json(event.to_json()) == event
    assert json.loads(event.to_json()) == data
