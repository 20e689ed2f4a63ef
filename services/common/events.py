"""The one typed violation event that every stage of citybrain speaks.

Its JSON form is fixed by ``shared/contracts.md``: it is also the Kafka message value and
the body of a control-center entry. Unknown extra fields are kept, so that a newer producer
can add fields without an older dispatcher dropping them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.bus import MAX_MESSAGE_BYTES, TopicSpec

SCHEMA_VERSION: Literal[1] = 1
CAMERA_ID_PATTERN = r"^[a-z0-9-]+$"
_CAMERA_ID_RE = re.compile(CAMERA_ID_PATTERN)


VIOLATIONS_TOPIC = TopicSpec(
    name="violations",
    partitions=6,
    retention_ms=30 * 24 * 3600 * 1000,
)


def dead_letter_topic(topic: str) -> str:
    """Where the messages of ``topic`` that cannot be dispatched go.

    >>> dead_letter_topic("violations")
    'violations.dlq'
    """
    return f"{topic}.dlq"


# Dead letters keep the original bytes, whatever their size, with the reason and source
# position in headers (see ``services.dispatcher.core.DeadLetterReason``). They are kept
# longer than events because someone has to look at them.
VIOLATIONS_DLQ_TOPIC = TopicSpec(
    name=dead_letter_topic(VIOLATIONS_TOPIC.name),
    partitions=1,
    retention_ms=90 * 24 * 3600 * 1000,
    max_message_bytes=MAX_MESSAGE_BYTES,
)


class ViolationType(StrEnum):
    RED_LIGHT = "red_light"
    ILLEGAL_PARKING = "illegal_parking"


class EventValidationError(ValueError):
    """An event that does not follow the schema; the message names every bad field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid violation event: " + "; ".join(problems))


def make_violation_id(
    *, camera_id: str, violation_type: ViolationType, track_id: int, ts_ms: int
) -> str:
    """Build the stable id that the dispatcher de-duplicates on.

    It depends only on what a replay of the same footage reproduces, so the same violation
    seen twice gets the same id. The number in it is the track id, or whatever number the
    caller passes as ``track_id`` to identify the vehicle (see ``ViolationEvent.create``).

    >>> make_violation_id(camera_id="wuzhen-cam-01", violation_type=ViolationType.RED_LIGHT,
    ...                   track_id=123, ts_ms=1700000000000)
    'wuzhen-cam-01:red_light:000123:1700000000000'
    """
    if not _CAMERA_ID_RE.match(camera_id):
        raise ValueError(f"camera_id {camera_id!r} must match {CAMERA_ID_PATTERN}")
    return f"{camera_id}:{violation_type.value}:{track_id:06d}:{ts_ms}"


NonNegInt = Annotated[int, Field(ge=0)]


class ViolationEvent(BaseModel):
    """A detected violation, exactly as the contracts' JSON describes it."""

    # strict: a frame number sent as "12" is a mistyped field and must be dead-lettered,
    # not silently coerced.
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, alias="schema")
    violation_id: str = Field(min_length=1, max_length=256)
    type: ViolationType
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN, max_length=64)
    city: str = Field(min_length=1, max_length=64)
    frame: NonNegInt
    ts_ms: NonNegInt
    track_id: NonNegInt
    bbox_xywh: tuple[NonNegInt, NonNegInt, NonNegInt, NonNegInt]
    confidence: float = Field(ge=0.0, le=1.0)
    snapshot: str | None = None
    # The first frame time of the tracker run that numbered ``track_id``: two events of one
    # camera with different epochs come from different detector runs (a handover, a
    # restart), whose track ids say nothing about each other.
    tracker_epoch_ms: NonNegInt | None = None
    # The capture time of the frame on which the detector decided: later than ``ts_ms``
    # when the violation is dated back (a crossing found after the vehicle coasted over the
    # line, a red light held until the signal was decided). Latency is measured from it.
    decided_ts_ms: NonNegInt | None = None
    # For a parking violation: the capture time its stay is timed from. A vehicle that stood
    # in the zone from the detector run's first frame has the run's ``tracker_epoch_ms``
    # here, and may have stood there for longer (another run may have reported it).
    parked_since_ts_ms: NonNegInt | None = None

    @property
    def parked_since_run_start(self) -> bool:
        """Whether the event is of a vehicle that stood in its zone from the first frame of
        the detector run that reported it: it may have stood there since before.

        >>> e = ViolationEvent.from_dict({"violation_id": "v", "type": "illegal_parking",
        ...     "camera_id": "c", "city": "x", "frame": 1, "ts_ms": 9000, "track_id": 7,
        ...     "bbox_xywh": [0, 0, 1, 1], "confidence": 0.6, "tracker_epoch_ms": 4000,
        ...     "parked_since_ts_ms": 4000})
        >>> e.parked_since_run_start
        True
        """
        return (
            self.type is ViolationType.ILLEGAL_PARKING
            and self.parked_since_ts_ms is not None
            and self.tracker_epoch_ms is not None
            and self.parked_since_ts_ms <= self.tracker_epoch_ms
        )

    @classmethod
    def create(
        cls,
        *,
        violation_type: ViolationType,
        camera_id: str,
        city: str,
        frame: int,
        ts_ms: int,
        track_id: int,
        bbox_xywh: tuple[int, int, int, int],
        confidence: float,
        snapshot: str | None = None,
        id_number: int | None = None,
        tracker_epoch_ms: int | None = None,
        decided_ts_ms: int | None = None,
        parked_since_ts_ms: int | None = None,
    ) -> ViolationEvent:
        """Build an event with its deterministic ``violation_id``.

        The id's number is the track id unless ``id_number`` is given. Track ids are
        private to one detector's tracker, so a detector that takes a camera over numbers
        the same vehicle differently; the detector passes the event's place among its
        frame's events of the same type instead, which both detectors see alike.
        """
        return cls.model_validate(
            {
                "violation_id": make_violation_id(
                    camera_id=camera_id,
                    violation_type=violation_type,
                    track_id=track_id if id_number is None else id_number,
                    ts_ms=ts_ms,
                ),
                "type": violation_type,
                "camera_id": camera_id,
                "city": city,
                "frame": frame,
                "ts_ms": ts_ms,
                "track_id": track_id,
                "bbox_xywh": tuple(int(v) for v in bbox_xywh),
                "confidence": float(confidence),
                "snapshot": snapshot,
                "tracker_epoch_ms": tracker_epoch_ms,
                "decided_ts_ms": decided_ts_ms,
                "parked_since_ts_ms": parked_since_ts_ms,
            },
            strict=False,
        )

    @classmethod
    def from_dict(cls, data: Any) -> ViolationEvent:
        """Validate a decoded JSON object, raising :class:`EventValidationError`."""
        if not isinstance(data, dict):
            raise EventValidationError([f"event must be a JSON object, got {type(data).__name__}"])
        try:
            # JSON-mode validation: a JSON array is a valid tuple, a string is a valid enum.
            return cls.model_validate_json(json.dumps(data))
        except ValidationError as exc:
            raise EventValidationError(_describe(exc)) from None

    @classmethod
    def from_valid_json(cls, raw: bytes | str) -> ViolationEvent | None:
        """The event, if the wire form is a valid one, else ``None``, in one pass.

        Valid events are nearly all of them; the rest are decoded step by step to say what
        is wrong with them (:meth:`from_json`), which costs three times as much.
        """
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            return None

    @classmethod
    def from_json(cls, raw: bytes | str) -> ViolationEvent:
        """Parse the wire form, raising :class:`EventValidationError` on any defect."""
        parsed = parse_event(raw)
        if isinstance(parsed, ViolationEvent):
            return parsed
        if parsed.reason is RejectionReason.NOT_JSON:
            raise EventValidationError([f"not valid JSON: {p}" for p in parsed.problems])
        raise EventValidationError(list(parsed.problems))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict, extra fields included, keys as in the contracts."""
        # An event without the detector's optional fields keeps the contracts' shape.
        unset = {
            name
            for name in ("tracker_epoch_ms", "decided_ts_ms", "parked_since_ts_ms")
            if getattr(self, name) is None
        }
        return self.model_dump(mode="json", by_alias=True, exclude=unset)

    def to_json(self) -> bytes:
        """The wire form: compact UTF-8 JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


class RejectionReason(StrEnum):
    """Why a message is not a valid event, coarsely: the dead-letter reasons."""

    NOT_JSON = "not_json"
    UNKNOWN_SCHEMA = "unknown_schema"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that is not a valid event, and each thing wrong with it."""

    reason: RejectionReason
    problems: tuple[str, ...]


def parse_event(raw: bytes | str) -> ViolationEvent | Rejection:
    """The event, or why the message is not one.

    Valid messages are validated in one pass; only a rejected one is decoded again, step by
    step, to say what is wrong with it.

    >>> rejection = parse_event(b'{"schema": 2}')
    >>> rejection.reason.value, rejection.problems
    ('unknown_schema', ('schema 2 is not 1',))
    """
    event = ViolationEvent.from_valid_json(raw)
    if event is not None:
        return event
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection(RejectionReason.NOT_JSON, (str(exc),))
    if isinstance(data, dict) and data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        problem = f"schema {data['schema']!r} is not {SCHEMA_VERSION}"
        return Rejection(RejectionReason.UNKNOWN_SCHEMA, (problem,))
    try:
        return ViolationEvent.from_dict(data)
    except EventValidationError as exc:
        return Rejection(RejectionReason.INVALID, tuple(exc.problems))


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<event>"
        problems.append(f"{where}: {err['msg']}")
    return problems
