"""The detector's Prometheus metrics, built in one place on a caller-supplied registry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.events import ViolationEvent
from services.detector.signal import LightState

# Stages take from tens of microseconds (rules) to a few milliseconds (a 1080p decode);
# a stage at 25 ms or more already means the camera cannot keep up at 30 fps.
STAGE_SECONDS_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip


@dataclass(frozen=True)
class DetectorMetrics:
    frames_processed: Counter
    frames_dropped: Counter
    frames_replayed: Counter
    stage_seconds: Histogram
    violations: Counter
    signal_changes: Counter
    commit_failures: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DetectorMetrics:
        return cls(
            frames_processed=Counter(
                "citybrain_frames_processed",
                "Frames run through a detector pipeline.",
                ["camera_id"],
                registry=registry,
            ),
            frames_dropped=Counter(
                "citybrain_frames_dropped",
                "Frames skipped: undecodable, wrong size, unreadable or without a scene.",
                ["camera_id", "reason"],
                registry=registry,
            ),
            frames_replayed=Counter(
                "citybrain_frames_replayed",
                "Frames read again, without publishing, to warm up a camera taken over from "
                "another detector.",
                ["camera_id"],
                registry=registry,
            ),
            stage_seconds=Histogram(
                "citybrain_detect_stage_seconds",
                "Time per frame in each detector stage.",
                ["stage"],
                buckets=STAGE_SECONDS_BUCKETS,
                registry=registry,
            ),
            violations=Counter(
                "citybrain_violations",
                "Violations detected.",
                # City too, so a dashboard can split violations per city without a join.
                ["type", "city"],
                registry=registry,
            ),
            signal_changes=Counter(
                "citybrain_signal_changes",
                "Confirmed traffic-light changes, by the state changed to.",
                ["camera_id", "state"],
                registry=registry,
            ),
            commit_failures=Counter(
                "citybrain_frames_commit_failures",
                "Commits of the frames consumer group's offsets that failed (the broker was "
                "away); each is tried again half a second later.",
                registry=registry,
            ),
        )

    def observer(self, camera_id: str) -> CameraObserver:
        """A :class:`~services.detector.pipeline.PipelineObserver` for one camera."""
        return CameraObserver(self, camera_id)

    def count_events(self, events: list[ViolationEvent]) -> None:
        for event in events:
            self.violations.labels(type=event.type.value, city=event.city).inc()


class CameraObserver:
    def __init__(self, metrics: DetectorMetrics, camera_id: str) -> None:
        self._metrics = metrics
        self._camera_id = camera_id

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self._metrics.stage_seconds.labels(stage=name).observe(time.perf_counter() - start)

    def stage(self, name: str) -> AbstractContextManager[None]:
        return self._timed(name)

    def signal_changed(self, state: LightState) -> None:
        self._metrics.signal_changes.labels(camera_id=self._camera_id, state=state.value).inc()
