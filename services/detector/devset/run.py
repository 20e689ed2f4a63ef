"""Replay one dev-set clip through a detector pipeline, keeping what scoring needs: the
events, and the signal state the pipeline holds after each frame."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.events import ViolationEvent
from services.common.frames import Frame
from services.detector.decode import CorruptFrameError
from services.detector.devset.labels import DevClip
from services.detector.evaluate import Occurrence
from services.detector.pipeline import DetectorPipeline
from services.detector.sources import VideoFileSource


@dataclass(frozen=True, slots=True)
class ClipRun:
    events: list[ViolationEvent]
    # held_signal[i]: the state held after frame i (``unknown`` for a frame not processed).
    held_signal: list[str]
    frames_read: int
    frames_dropped: int
    seconds: float

    @property
    def replay_fps(self) -> float:
        return self.frames_read / self.seconds if self.seconds > 0 else 0.0

    def occurrences(self) -> list[Occurrence]:
        return [
            Occurrence(event.type, event.frame, bbox_xywh=event.bbox_xywh) for event in self.events
        ]


def replay_clip(clip: DevClip, *, on_frame: Callable[[], None] | None = None) -> ClipRun:
    """Run every frame of the clip's video; raises ``VideoOpenError`` for an unusable file."""
    scene = clip.scene
    source = VideoFileSource(clip.video_path, camera_id=scene.camera_id, fps=scene.fps)
    pipeline = DetectorPipeline(scene)
    events: list[ViolationEvent] = []
    held: list[str] = []
    read = dropped = 0
    started = time.perf_counter()
    for item in source:
        read += 1
        if isinstance(item, Frame):
            try:
                events.extend(pipeline.process(item))
            except CorruptFrameError:
                dropped += 1
        else:
            dropped += 1
        # A frame index can only run ahead of the list (never behind), and a skipped index
        # has no state held for it.
        held.extend(["unknown"] * (item.index - len(held)))
        held.append(pipeline.signal_state.value)
        if on_frame is not None:
            on_frame()
    return ClipRun(
        events=events,
        held_signal=held,
        frames_read=read,
        frames_dropped=dropped,
        seconds=time.perf_counter() - started,
    )
