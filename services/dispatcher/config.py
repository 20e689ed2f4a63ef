"""Dispatch settings: ``dispatch.yaml``, validated once at start-up.

The file has one top-level key, ``dispatch``, so ``citybrain config check`` recognises it.
"""

from __future__ import annotations

import dataclasses
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from services.common.bus import TopicSpec
from services.common.config.base import StrictModel
from services.common.config.loader import load_model
from services.common.config.paths import DISPATCH_FILE, config_path
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC, ViolationType


class Priority(StrEnum):
    """How soon an officer should go, most urgent first."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class PeakWindow(StrictModel):
    start: time = Field(description="local start time, e.g. 07:00")
    end: time = Field(description="local end time (exclusive), e.g. 09:00")
    weekdays_only: bool = Field(default=True, description="only Monday to Friday")

    @model_validator(mode="after")
    def verify_start_before_end(self) -> Self:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class PriorityRule(StrictModel):
    """A rule matches when every condition it names holds; conditions left out match anything."""

    name: str = Field(min_length=1, description="shown in logs and docs")
    priority: Priority
    types: list[ViolationType] = Field(default_factory=list, description="violation types")
    camera_tags: list[str] = Field(
        default_factory=list, description="the camera has at least one of these catalogue tags"
    )
    peak_hours: bool | None = Field(
        default=None, description="true: only in peak hours; false: only outside them"
    )


class PrioritySettings(StrictModel):
    default: Priority = Field(default=Priority.NORMAL, description="when no rule matches")
    peak_hours: list[PeakWindow] = Field(default_factory=list)
    fallback_timezone: str = Field(
        default="Asia/Shanghai",
        description="local time for events whose city is not in the catalogue",
    )
    rules: list[PriorityRule] = Field(default_factory=list, description="first match wins")


class GroupingSettings(StrictModel):
    window_s: float = Field(
        default=600,
        ge=0,
        le=86_400,
        description=(
            "a repeat of the same vehicle (track), camera and type within this many seconds "
            "of the group's last event raises the existing entry's counter; 0 disables "
            "grouping. Also how long a parking entry is remembered for a detector run that "
            "took the camera over while the car stood, and reports it when it leaves"
        ),
    )
    handover_s: dict[ViolationType, Annotated[float, Field(ge=0, le=600)]] = Field(
        default_factory=lambda: {ViolationType.RED_LIGHT: 2.0, ViolationType.ILLEGAL_PARKING: 6.0},
        description=(
            "per violation type: an event from another detector run of the camera (after a "
            "handover or a restart) whose box overlaps an entry's within this many seconds "
            "is the same vehicle, and raises that entry's counter; a type left out is never "
            "matched across runs. Keep parking's below the cameras' shortest max_dwell_s: the "
            "next car to park on the same spot is reported at least that much later (a car "
            "that stood from the new run's first frame is matched over grouping.window_s "
            "instead)"
        ),
    )


class BatchSettings(StrictModel):
    max_events: int = Field(
        default=500, ge=1, le=10_000, description="events written to Redis in one pipeline"
    )
    max_wait_ms: int = Field(
        default=5,
        ge=1,
        le=1_000,
        description="how long a partial batch waits for more events; bounds the added latency",
    )


class RetrySettings(StrictModel):
    initial_backoff_s: float = Field(default=0.05, gt=0, le=10)
    max_backoff_s: float = Field(default=5.0, gt=0, le=300)

    @model_validator(mode="after")
    def verify_backoff_order(self) -> Self:
        if self.initial_backoff_s > self.max_backoff_s:
            raise ValueError("initial_backoff_s must not exceed max_backoff_s")
        return self


class ConsumerSettings(StrictModel):
    session_timeout_s: float = Field(
        default=10,
        ge=6,
        le=300,
        description=(
            "a crashed worker's partitions move to the others after this long; the broker's "
            "group.min.session.timeout.ms (6 s) is the floor"
        ),
    )
    heartbeat_interval_s: float = Field(default=3, gt=0, le=100)
    fetch_max_wait_s: float = Field(
        default=0.02,
        gt=0,
        le=1.5,
        description=(
            "how long the broker may hold a fetch for partitions with no new data; a fetch "
            "that waits holds up the worker's other partitions on that broker"
        ),
    )
    commit_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="how often acked offsets are committed"
    )

    @model_validator(mode="after")
    def verify_heartbeat_under_session(self) -> Self:
        if self.heartbeat_interval_s * 2 > self.session_timeout_s:
            raise ValueError("heartbeat_interval_s must be at most half of session_timeout_s")
        return self


class TopicSettings(StrictModel):
    partitions: int = Field(ge=1, le=1_000, description="fixed once the topic exists")
    retention_hours: float = Field(gt=0, le=24 * 365)

    def apply_to(self, declared: TopicSpec, *, name: str) -> TopicSpec:
        """The topic as declared beside its event, named ``name``, with these settings."""
        return dataclasses.replace(
            declared,
            name=name,
            partitions=self.partitions,
            retention_ms=int(self.retention_hours * 3600 * 1000),
        )


def _topic_defaults(spec: TopicSpec) -> TopicSettings:
    return TopicSettings(partitions=spec.partitions, retention_hours=spec.retention_ms / 3.6e6)


class TopicsSettings(StrictModel):
    violations: TopicSettings = Field(default_factory=lambda: _topic_defaults(VIOLATIONS_TOPIC))
    dead_letters: TopicSettings = Field(
        default_factory=lambda: _topic_defaults(VIOLATIONS_DLQ_TOPIC)
    )


class DispatchConfig(StrictModel):
    routing: Literal["city", "district"] = Field(
        default="district", description="one control-center queue per city or per district"
    )
    max_event_bytes: int = Field(
        default=64 * 1024,
        ge=1_024,
        le=VIOLATIONS_TOPIC.max_message_bytes,
        description="larger messages are dead-lettered unparsed",
    )
    priorities: PrioritySettings = Field(default_factory=PrioritySettings)
    grouping: GroupingSettings = Field(default_factory=GroupingSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    redis_retry: RetrySettings = Field(default_factory=RetrySettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    topics: TopicsSettings = Field(default_factory=TopicsSettings)
    dedup_horizon_s: float = Field(
        default=3_600,
        ge=1,
        le=7 * 86_400,
        description=(
            "how long the dispatcher's own state remembers a violation id; older repeats of "
            "an id are still caught by the queue's idempotent append"
        ),
    )
    state_prune_interval_s: float = Field(
        default=60, gt=0, le=3_600, description="how often expired dedup/grouping state is dropped"
    )

    @model_validator(mode="after")
    def verify_horizon_covers_grouping(self) -> Self:
        if self.dedup_horizon_s < self.grouping.window_s:
            raise ValueError("dedup_horizon_s must be at least grouping.window_s")
        return self


class DispatchFile(StrictModel):
    """The whole of ``dispatch.yaml``."""

    dispatch: DispatchConfig


def load_dispatch_config(path: Path | str | None = None) -> DispatchConfig:
    """Load and validate the dispatch settings (the default ``dispatch.yaml`` when ``path`` is
    None), raising ``ConfigError`` with key paths."""
    return load_model(
        DispatchFile, path if path is not None else config_path(DISPATCH_FILE)
    ).dispatch
