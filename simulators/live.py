"""A live camera feed: simulated cameras publishing JPEG frames at wall-clock time.

Frame ``i`` of a camera is due at ``start_ts_ms + i * 1000 / fps`` (its capture time is
that instant, so end-to-end latency downstream is measured from it). Traffic is simulated a
chunk at a time, the next chunk in a background thread while this one streams, so a feed
can run for as long as it is wanted. A feed that falls behind skips the late frames, as a
camera with a saturated uplink does, before paying for their encoding, and counts them
(see ``MAX_LATE_MS``); every violation of a chunk's ground truth is handed to a sink as
soon as the chunk is simulated.

A load generator renders ahead (``render_ahead``): each chunk's frames are drawn and
encoded with its traffic, before the chunk streams, so that while it streams the feed only
publishes and leaves the cores to the system under load.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.bus import Bus
from services.common.frames import FRAMES_TOPIC, Frame
from simulators.feed import SimulatedCamera, simulate_camera
from simulators.truth import TruthViolation

TruthSink = Callable[[Sequence[TruthViolation]], None]
DropSink = Callable[[str, int], None]  # camera id, capture ts of a frame never sent

# A frame this late is skipped. A camera buffers about a second before it gives up on a
# frame; stricter, a feed on a busy machine starves all but its first camera of each instant.
MAX_LATE_MS = 1000.0
# Traffic is simulated this many seconds at a time.
CHUNK_S = 120.0
# Chunks of a feed that renders ahead: 30 cameras at 1280x720 and 5 fps hold about 850 MB of
# JPEG a minute, and a feed holds two chunks (one streaming, the next being rendered).
RENDER_AHEAD_CHUNK_S = 60.0


@dataclass(frozen=True, slots=True)
class LiveFeedSettings:
    camera_ids: tuple[str, ...]
    catalogue_path: Path | None  # None: the config directory's
    simulator_config_path: Path | None
    resolution_wh: tuple[int, int]
    fps: float  # the cameras' scene frame rate (every camera of a feed shares it)
    start_ts_ms: int
    seconds: float | None = None  # None: until stopped
    chunk_s: float = CHUNK_S
    quality: int = 85
    seed: int = 0
    # Each camera's slot in its fleet (see ``services.common.config.fleet_order``); a
    # camera without one goes to the partition its id hashes to.
    slots: Mapping[str, int] = field(default_factory=dict)
    render_ahead: bool = False


@dataclass(frozen=True)
class LiveFeedMetrics:
    published: Counter
    dropped: Counter
    behind_seconds: Gauge
    ready: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> LiveFeedMetrics:
        return cls(
            published=Counter(
                "citybrain_camera_frames_published",
                "Frames a simulated camera published to the frames topic.",
                ["camera_id"],
                registry=registry,
            ),
            dropped=Counter(
                "citybrain_camera_frames_dropped",
                "Frames a simulated camera skipped; reason=late: the feed fell behind.",
                ["camera_id", "reason"],
                registry=registry,
            ),
            behind_seconds=Gauge(
                "citybrain_camera_feed_behind_seconds",
                "How far the feed's latest frame was sent after its capture time.",
                registry=registry,
            ),
            ready=Gauge(
                "citybrain_camera_feed_ready",
                "1 once the feed's first chunk is simulated (and rendered, when rendering "
                "ahead): from then on it only waits for each frame's capture time.",
                registry=registry,
            ),
        )


@dataclass
class LiveFeedSummary:
    published: int = 0
    dropped_late: int = 0
    violations: int = 0


@dataclass(frozen=True, slots=True)
class _Chunk:
    cameras: list[SimulatedCamera]
    first_index: int  # frame index of the chunk's frame 0 in the whole feed
    n_frames: int
    # Rendering ahead: each sent frame's JPEG by (camera position, frame index in the chunk),
    # taken out as it is published.
    rendered: dict[tuple[int, int], bytes] = field(default_factory=dict)


def run_live_feed(
    bus: Bus,
    settings: LiveFeedSettings,
    *,
    metrics: LiveFeedMetrics,
    stop: threading.Event,
    truth_sink: TruthSink,
    drop_sink: DropSink | None = None,
) -> LiveFeedSummary:
    """Publish the cameras' frames at their capture times until ``seconds`` or ``stop``."""
    bus.ensure_topics([FRAMES_TOPIC])
    summary = LiveFeedSummary()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="traffic") as pool:
        pending: Future[_Chunk] | None = pool.submit(_simulate_chunk, settings, 0, 0)
        while pending is not None and not stop.is_set():
            chunk = pending.result()
            metrics.ready.set(1)
            pending = _next_chunk(pool, settings, chunk)
            found = [
                replace(v, frame=v.frame + chunk.first_index)
                for c in chunk.cameras
                for v in c.truth
            ]
            truth_sink(found)
            summary.violations += len(found)
            _stream_chunk(
                bus,
                chunk,
                settings=settings,
                metrics=metrics,
                stop=stop,
                summary=summary,
                drop_sink=drop_sink,
            )
        if pending is not None:
            pending.cancel()
    bus.flush()
    return summary


def _chunk_frames(settings: LiveFeedSettings, first_index: int) -> int:
    per_chunk = max(round(settings.chunk_s * settings.fps), 1)
    if settings.seconds is None:
        return per_chunk
    total = max(round(settings.seconds * settings.fps), 1)
    return max(min(per_chunk, total - first_index), 0)


def _simulate_chunk(settings: LiveFeedSettings, number: int, first_index: int) -> _Chunk:
    n_frames = _chunk_frames(settings, first_index)
    cameras = [
        simulate_camera(
            camera_id,
            seconds=n_frames / settings.fps,
            seed=settings.seed + number,
            resolution_wh=settings.resolution_wh,
            start_ts_ms=settings.start_ts_ms + round(first_index * 1000 / settings.fps),
            catalogue_path=settings.catalogue_path,
            simulator_config_path=settings.simulator_config_path,
        )
        for camera_id in settings.camera_ids
    ]
    chunk = _Chunk(cameras=cameras, first_index=first_index, n_frames=n_frames)
    if settings.render_ahead:
        for _ts_ms, position, index in _schedule(chunk):
            chunk.rendered[(position, index)] = _jpeg(cameras[position], index, settings)
    return chunk


def _jpeg(camera: SimulatedCamera, index: int, settings: LiveFeedSettings) -> bytes:
    jpeg = camera.jpeg_frame(index, settings.quality).jpeg
    assert jpeg is not None  # jpeg_frame always encodes
    return jpeg


def _next_chunk(
    pool: ThreadPoolExecutor, settings: LiveFeedSettings, chunk: _Chunk
) -> Future[_Chunk] | None:
    first_index = chunk.first_index + chunk.n_frames
    if _chunk_frames(settings, first_index) == 0:
        return None
    number = first_index // max(chunk.n_frames, 1)
    return pool.submit(_simulate_chunk, settings, number, first_index)


def _schedule(chunk: _Chunk) -> Iterator[tuple[int, int, int]]:
    """(capture ts, camera position, frame index in the chunk), in capture-time order."""
    return heapq.merge(*(_due(camera, position) for position, camera in enumerate(chunk.cameras)))


def _due(camera: SimulatedCamera, position: int) -> Iterator[tuple[int, int, int]]:
    # A function, not a generator expression in the comprehension above: that one would
    # read ``camera`` and ``position`` late, and every stream would be the last camera's.
    return ((t.ts_ms, position, t.frame) for t in camera.frame_truth if not t.dropped)


def _stream_chunk(
    bus: Bus,
    chunk: _Chunk,
    *,
    settings: LiveFeedSettings,
    metrics: LiveFeedMetrics,
    stop: threading.Event,
    summary: LiveFeedSummary,
    drop_sink: DropSink | None,
) -> None:
    for ts_ms, position, index in _schedule(chunk):
        camera = chunk.cameras[position]
        late_ms = time.time() * 1000 - ts_ms
        if late_ms < 0 and stop.wait(-late_ms / 1000):
            return
        if stop.is_set():
            return
        if late_ms > max(MAX_LATE_MS, 2000 / camera.fps):
            metrics.dropped.labels(camera_id=camera.camera_id, reason="late").inc()
            summary.dropped_late += 1
            if drop_sink is not None:
                drop_sink(camera.camera_id, ts_ms)
            continue
        jpeg = chunk.rendered.pop((position, index), None) or _jpeg(camera, index, settings)
        live = Frame(
            camera_id=camera.camera_id, index=index + chunk.first_index, ts_ms=ts_ms, jpeg=jpeg
        )
        bus.publish(
            FRAMES_TOPIC.name,
            jpeg,
            key=live.camera_id.encode(),
            headers=live.headers(),
            slot=settings.slots.get(live.camera_id),
        )
        metrics.published.labels(camera_id=camera.camera_id).inc()
        metrics.behind_seconds.set(max(time.time() * 1000 - ts_ms, 0) / 1000)
        summary.published += 1


def jsonl_truth_sink(handle: IO[str]) -> TruthSink:
    """Append each violation as one JSON line (the ``truth.jsonl`` violation form)."""

    def write(violations: Sequence[TruthViolation]) -> None:
        for violation in violations:
            handle.write(json.dumps(violation.to_json_dict(), separators=(",", ":")) + "\n")
        handle.flush()

    return write


def jsonl_drop_sink(handle: IO[str]) -> DropSink:
    """Append each frame skipped at the source as ``{"kind": "source_drop", ...}``: a
    violation whose frames never left the camera is not the pipeline's loss."""

    def write(camera_id: str, ts_ms: int) -> None:
        record = {"kind": "source_drop", "camera_id": camera_id, "ts_ms": ts_ms}
        handle.write(json.dumps(record, separators=(",", ":")) + "\n")

    return write
