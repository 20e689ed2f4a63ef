"""The detector service loop: frames from any source, one pipeline per camera, events out.

It owns the pipelines and the counting; sources, sinks (bus, JSONL file) and the evidence
writer are handed in, so the same loop serves ``citybrain detect``, ``replay`` and ``run``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from services.common.bus import Bus
from services.common.config.loader import ConfigError, load_model
from services.common.config.scene import SceneConfig
from services.common.events import VIOLATIONS_TOPIC, ViolationEvent
from services.common.frames import Frame
from services.detector.decode import CorruptFrameError
from services.detector.evidence import EvidenceSink
from services.detector.metrics import DetectorMetrics
from services.detector.pipeline import DetectorPipeline, DetectorSettings
from services.detector.recorder import EvidenceRecorder
from services.detector.result import FrameResult, SeenFrame
from services.detector.signal import LightState
from services.detector.sources import DroppedFrame, SourceItem

EventSink = Callable[[ViolationEvent], None]
# Receives every frame read, dropped ones included, with what the detector saw in it.
FrameSink = Callable[[SeenFrame], None]
SceneLookup = Callable[[str], SceneConfig | None]

# A replayed frame this far after the camera's last frame (the camera comes back after
# another detector had it), or not after it (this detector replays what it saw before), means
# the pipeline's state belongs to another stretch of the feed: it starts again. A file's odd
# timestamps (repeated, or out of order) never restart it.
DISCONTINUITY_MS = 3_000
# Any frame this far after the camera's last one: the camera was silent (an outage, or the
# same camera id streaming again later), the scene it saw is gone, and tracks standing in it
# would swallow the vehicles now parking there. In a load test, a new detector group warmed
# on the last 30 s of `frames` took in the end of an earlier run of the same cameras, and
# its standing tracks hid the next run's first parked cars.
SILENCE_MS = 10_000


@dataclass
class WorkerStats:
    frames_read: int = 0
    frames_processed: int = 0
    frames_replayed: int = 0
    restarts: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)

    @property
    def frames_dropped(self) -> int:
        return sum(self.dropped.values())


class SceneDirectory:
    """Scenes looked up by camera id as ``<dir>/<camera_id>.yaml``, loaded once each."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._cache: dict[str, SceneConfig | None] = {}

    def __call__(self, camera_id: str) -> SceneConfig | None:
        if camera_id not in self._cache:
            path = self._directory / f"{camera_id}.yaml"
            try:
                self._cache[camera_id] = load_model(SceneConfig, path) if path.is_file() else None
            except ConfigError:
                self._cache[camera_id] = None
        return self._cache[camera_id]


class DetectorWorker:
    """Routes each frame to its camera's pipeline, counts drops, hands events to the sinks."""

    def __init__(
        self,
        *,
        scenes: SceneLookup,
        sinks: list[EventSink],
        metrics: DetectorMetrics,
        evidence: EvidenceSink | None = None,
        settings: DetectorSettings | None = None,
        frame_sinks: list[FrameSink] | None = None,
        recorder: EvidenceRecorder | None = None,
    ) -> None:
        """``recorder`` adds evidence panels to each event; ``frame_sinks`` see every frame."""
        self._scenes = scenes
        self._sinks = sinks
        self._frame_sinks = frame_sinks or []
        self._recorder = recorder
        self._metrics = metrics
        self._evidence = evidence
        self._settings = settings
        self._pipelines: dict[str, DetectorPipeline] = {}
        self._last_ts_ms: dict[str, int] = {}
        self.stats = WorkerStats()

    def run(self, items: Iterable[SourceItem]) -> WorkerStats:
        """Handle every item, then :meth:`close`."""
        try:
            for item in items:
                self.handle(item)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        """Write the evidence still waiting for frames that will not come now."""
        if self._recorder is not None:
            self._recorder.close()

    def handle(self, item: SourceItem) -> list[ViolationEvent]:
        """Process one source item; never raises for a bad frame.

        A ``replay`` frame only warms the camera's pipeline up: its events are dropped,
        since the detector that owned the camera before already published them.
        """
        self.stats.frames_read += 1
        if isinstance(item, DroppedFrame):
            self._drop(item.camera_id, item.reason)
            self._see_dropped(item.camera_id, item.index, item.ts_ms, item.reason)
            return []
        self._restart_on_discontinuity(item)
        pipeline = self._pipeline(item.camera_id)
        if pipeline is None:
            self._drop(item.camera_id, "no_scene")
            return []
        try:
            result = pipeline.process_frame(item)
        except CorruptFrameError as exc:
            self._drop(item.camera_id, exc.reason)
            self._see_dropped(item.camera_id, item.index, item.ts_ms, exc.reason)
            return []
        if item.replay:
            self.stats.frames_replayed += 1
            self._metrics.frames_replayed.labels(camera_id=item.camera_id).inc()
            return []
        if self._recorder is not None:
            result = self._recorder.observe(pipeline.scene, item, result)
        events = list(result.events)
        self.stats.frames_processed += 1
        self._metrics.frames_processed.labels(camera_id=item.camera_id).inc()
        self._metrics.count_events(events)
        for event in events:
            self.stats.events[event.type.value] += 1
            for sink in self._sinks:
                sink(event)
        self._see(SeenFrame(camera_id=item.camera_id, frame=item, result=result))
        return events

    def _see_dropped(self, camera_id: str, index: int, ts_ms: int | None, reason: str) -> None:
        if not self._frame_sinks:
            return
        pipeline = self._pipelines.get(camera_id)
        when_ms = ts_ms if ts_ms is not None else 0
        result = (
            pipeline.held(index=index, ts_ms=when_ms, dropped=reason)
            if pipeline is not None
            else FrameResult(
                frame=index, ts_ms=when_ms, signal=LightState.UNKNOWN, tracks=(), dropped=reason
            )
        )
        self._see(SeenFrame(camera_id=camera_id, frame=None, result=result))

    def _see(self, seen: SeenFrame) -> None:
        for sink in self._frame_sinks:
            sink(seen)

    def _restart_on_discontinuity(self, frame: Frame) -> None:
        last = self._last_ts_ms.get(frame.camera_id)
        self._last_ts_ms[frame.camera_id] = frame.ts_ms
        if last is None:
            return
        gap_ms = frame.ts_ms - last
        restart = gap_ms > SILENCE_MS or (
            frame.replay and (gap_ms <= 0 or gap_ms > DISCONTINUITY_MS)
        )
        if restart and self._pipelines.pop(frame.camera_id, None) is not None:
            self.stats.restarts += 1

    def _pipeline(self, camera_id: str) -> DetectorPipeline | None:
        pipeline = self._pipelines.get(camera_id)
        if pipeline is None:
            scene = self._scenes(camera_id)
            if scene is None:
                return None
            pipeline = self._pipelines[camera_id] = DetectorPipeline(
                scene,
                settings=self._settings,
                evidence=self._evidence,
                observer=self._metrics.observer(camera_id),
            )
        return pipeline

    def _drop(self, camera_id: str, reason: str) -> None:
        self.stats.dropped[reason] += 1
        self._metrics.frames_dropped.labels(camera_id=camera_id, reason=reason).inc()


def bus_sink(bus: Bus) -> EventSink:
    """Publish each event on the ``violations`` topic, keyed by camera (per-camera order)."""
    bus.ensure_topics([VIOLATIONS_TOPIC])

    def publish(event: ViolationEvent) -> None:
        bus.publish(VIOLATIONS_TOPIC.name, event.to_json(), key=event.camera_id.encode())

    return publish


def jsonl_sink(handle: IO[str]) -> EventSink:
    """Write each event as one JSON line (the contracts' event form)."""

    def write(event: ViolationEvent) -> None:
        handle.write(json.dumps(event.to_dict(), separators=(",", ":")) + "\n")

    return write


def trace_sink(handle: IO[str]) -> FrameSink:
    """Write each frame's trace line (the contracts' ``replay --trace`` form)."""

    def write(seen: SeenFrame) -> None:
        handle.write(json.dumps(seen.result.to_trace(), separators=(",", ":")) + "\n")

    return write


def interleave(sources: list[Iterable[SourceItem]]) -> Iterator[SourceItem]:
    """Round-robin over several cameras' sources until every one is exhausted."""
    iterators = [iter(source) for source in sources]
    while iterators:
        for iterator in list(iterators):
            item = next(iterator, None)
            if item is None:
                iterators.remove(iterator)
            else:
                yield item
