"""One sample a second of a running stack: its services' /metrics and its processes' CPU/RSS.

Counters are kept as read (totals); the report turns consecutive samples into rates. Only
127.0.0.1 URLs are ever read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil
from prometheus_client.parser import text_string_to_metric_families

from services.common.lag import LAG_METRIC
from services.stack.processes import cpu_percent, http_text, rss_bytes

PUBLISHED = "citybrain_camera_frames_published_total"
SOURCE_DROPPED = "citybrain_camera_frames_dropped_total"
PROCESSED = "citybrain_frames_processed_total"
REPLAYED = "citybrain_frames_replayed_total"
DETECTOR_DROPPED = "citybrain_frames_dropped_total"
DISPATCHED = "citybrain_dispatched_total"
READY = "citybrain_camera_feed_ready"


@dataclass(frozen=True, slots=True)
class Target:
    """A process to sample: its /metrics URL (if any) and its PID (if local)."""

    name: str
    role: str
    metrics_url: str | None
    process: psutil.Process | None


@dataclass
class Reading:
    """What one target's /metrics said, limited to the load test's cameras."""

    published: float = 0.0
    source_dropped: float = 0.0
    processed: float = 0.0
    replayed: float = 0.0
    detector_dropped: dict[str, float] = field(default_factory=dict)
    dispatched: float = 0.0
    lag_by_group: dict[str, float] = field(default_factory=dict)
    camera_frames: dict[str, float] = field(default_factory=dict)


@dataclass
class Sample:
    t_s: float
    published: float = 0.0
    source_dropped: float = 0.0
    processed: float = 0.0
    replayed: float = 0.0
    detector_dropped: dict[str, float] = field(default_factory=dict)
    dispatched: float = 0.0
    lag_by_group: dict[str, float] = field(default_factory=dict)
    # detector process -> camera -> frames processed or replayed (who has which camera)
    camera_frames: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    rss_bytes: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, role: str, reading: Reading, *, alive: bool) -> None:
        self.published += reading.published
        self.source_dropped += reading.source_dropped
        self.processed += reading.processed
        self.replayed += reading.replayed
        self.dispatched += reading.dispatched
        for reason, count in reading.detector_dropped.items():
            self.detector_dropped[reason] = self.detector_dropped.get(reason, 0.0) + count
        if alive:  # a dead consumer's last lag is not lag any more
            for group, lag in reading.lag_by_group.items():
                self.lag_by_group[group] = self.lag_by_group.get(group, 0.0) + lag
        if role == "detector" and alive:
            self.camera_frames[name] = dict(reading.camera_frames)


class Sampler:
    """Reads every target; ``cameras`` limits the frame counters to the load test's own.

    A target that stops answering (a killed detector) keeps contributing its last counter
    values, so totals never go backwards; its lag and cameras are no longer counted.
    """

    def __init__(self, targets: list[Target], *, cameras: set[str]) -> None:
        self._targets = targets
        self._cameras = cameras
        self._last: dict[str, Reading] = {}
        for target in targets:
            cpu_percent(target.process)  # the first reading only starts psutil's interval

    def sample(self, t_s: float) -> Sample:
        sample = Sample(t_s=t_s)
        for target in self._targets:
            cpu, rss = cpu_percent(target.process), rss_bytes(target.process)
            if cpu is not None and rss is not None:
                sample.cpu_percent[target.name] = cpu
                sample.rss_bytes[target.name] = rss
            text = http_text(target.metrics_url, timeout_s=1.0) if target.metrics_url else None
            if text:
                self._last[target.name] = self._read(text)
            reading = self._last.get(target.name)
            if reading is not None:
                sample.add(target.name, target.role, reading, alive=text is not None)
        return sample

    def _read(self, text: str) -> Reading:
        reading = Reading()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels: Mapping[str, str] = s.labels
                camera = labels.get("camera_id", "")
                ours = camera in self._cameras
                if s.name == PUBLISHED and ours:
                    reading.published += s.value
                elif s.name == SOURCE_DROPPED and ours:
                    reading.source_dropped += s.value
                elif s.name in (PROCESSED, REPLAYED) and ours:
                    if s.name == PROCESSED:
                        reading.processed += s.value
                    else:
                        reading.replayed += s.value
                    reading.camera_frames[camera] = reading.camera_frames.get(camera, 0.0) + (
                        s.value
                    )
                elif s.name == DETECTOR_DROPPED and ours:
                    reason = labels.get("reason", "?")
                    reading.detector_dropped[reason] = (
                        reading.detector_dropped.get(reason, 0.0) + s.value
                    )
                elif s.name == DISPATCHED:
                    reading.dispatched += s.value
                elif s.name == LAG_METRIC:
                    group = labels.get("group", "?")
                    reading.lag_by_group[group] = reading.lag_by_group.get(group, 0.0) + s.value
        return reading
