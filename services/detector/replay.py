"""Replay a recorded video through one detector pipeline, as fast as the machine allows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from services.common.config.scene import SceneConfig
from services.detector.evidence import EvidenceSink
from services.detector.metrics import DetectorMetrics
from services.detector.recorder import EvidenceRecorder
from services.detector.sources import SourceItem
from services.detector.worker import DetectorWorker, EventSink, FrameSink, WorkerStats


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    stats: WorkerStats
    seconds: float

    @property
    def fps(self) -> float:
        return self.stats.frames_read / self.seconds if self.seconds > 0 else 0.0


def replay(
    source: Iterable[SourceItem],
    *,
    scene: SceneConfig,
    sinks: list[EventSink],
    evidence: EvidenceSink | None = None,
    recorder: EvidenceRecorder | None = None,
    frame_sinks: list[FrameSink] | None = None,
    on_item: Callable[[], None] | None = None,
) -> ReplaySummary:
    """Run every frame of ``source`` through a pipeline for ``scene``; ``on_item`` ticks
    once per frame read (for a progress bar), and ``frame_sinks`` (trace, annotated video)
    see each one."""
    worker = DetectorWorker(
        scenes=lambda camera_id: scene if camera_id == scene.camera_id else None,
        sinks=sinks,
        metrics=DetectorMetrics.create(CollectorRegistry()),
        evidence=evidence,
        frame_sinks=frame_sinks,
        recorder=recorder,
    )

    def ticking() -> Iterator[SourceItem]:
        for item in source:
            yield item
            if on_item is not None:
                on_item()

    started = time.perf_counter()
    stats = worker.run(ticking())
    return ReplaySummary(stats=stats, seconds=time.perf_counter() - started)
