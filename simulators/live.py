"""Live camera streams: frames stamped with wall-clock capture times, for a running stack.

A :class:`LiveFeed` holds the cameras this replica owns. Each owned camera plays footage
segment after segment (``seconds`` long, the next seed each time) with capture times that
start when the camera was taken on, so latency measured from ``ts_ms`` is real. The clock is
passed in, so the schedule is testable without sleeping.

>>> feed = LiveFeed(lambda camera_id, segment, start_ts_ms: simulate_camera(
...     camera_id, seconds=1, seed=segment, resolution_wh=(320, 180), start_ts_ms=start_ts_ms))
>>> feed.own(["wuzhen-cam-01"], now_ms=1_000)
>>> [(f.index, f.ts_ms) for f in feed.take_due(now_ms=1_250).frames]
[(0, 1000), (1, 1100), (2, 1200)]
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.common.frames import Frame
from simulators.feed import SimulatedCamera, simulate_camera

__all__ = ["CameraFactory", "Due", "LiveFeed", "simulate_camera"]

# (camera_id, segment number, capture time of the segment's first frame) -> its footage.
CameraFactory = Callable[[str, int, int], SimulatedCamera]
# A frame due longer ago than this is skipped, as a real camera that cannot send drops it.
MAX_LATE_MS = 1_000


@dataclass(slots=True)
class _Stream:
    camera: SimulatedCamera
    segment: int
    first_index: int  # this segment's frame 0 counted from when the camera was taken on
    next_index: int = 0


@dataclass(frozen=True, slots=True)
class Due:
    """Frames to send now, in capture order, and per camera how many were too late to send."""

    frames: list[Frame] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


class LiveFeed:
    """The owned cameras' frames, due at their capture times; a frame is encoded only if sent."""

    def __init__(
        self, make_camera: CameraFactory, *, quality: int = 85, max_late_ms: int = MAX_LATE_MS
    ) -> None:
        self._make_camera = make_camera
        self._quality = quality
        self._max_late_ms = max_late_ms
        self._streams: dict[str, _Stream] = {}

    @property
    def owned(self) -> list[str]:
        return sorted(self._streams)

    def own(self, camera_ids: Iterable[str], *, now_ms: int) -> None:
        """Stream exactly ``camera_ids`` from now on: new ones start at ``now_ms``."""
        wanted = set(camera_ids)
        for camera_id in set(self._streams) - wanted:
            del self._streams[camera_id]
        for camera_id in sorted(wanted - set(self._streams)):
            self._streams[camera_id] = _Stream(self._make_camera(camera_id, 0, now_ms), 0, 0)

    def _head(self, camera_id: str) -> tuple[_Stream, int]:
        """The camera's stream and its next frame's capture time, rolling segments over."""
        stream = self._streams[camera_id]
        camera = stream.camera
        if stream.next_index >= camera.n_frames:
            # The next segment starts one frame interval after this one's last frame.
            stream = self._streams[camera_id] = _Stream(
                self._make_camera(camera_id, stream.segment + 1, camera.ts_ms(camera.n_frames)),
                segment=stream.segment + 1,
                first_index=stream.first_index + camera.n_frames,
            )
        return stream, stream.camera.ts_ms(stream.next_index)

    def next_due_ms(self) -> int | None:
        """When the earliest pending frame is due; None with no camera owned."""
        return min((self._head(camera_id)[1] for camera_id in self._streams), default=None)

    def take_due(self, *, now_ms: int) -> Due:
        """Every frame due by ``now_ms``, oldest first, indexed across segments."""
        due = Due()
        for camera_id in list(self._streams):
            while (head := self._head(camera_id))[1] <= now_ms:
                stream, ts_ms = head
                index = stream.next_index
                stream.next_index += 1
                if now_ms - ts_ms > self._max_late_ms:
                    due.skipped[camera_id] += 1
                    continue
                frame = stream.camera.jpeg_frame(index, self._quality)
                if frame is not None:
                    due.frames.append(dataclasses.replace(frame, index=stream.first_index + index))
        due.frames.sort(key=lambda f: f.ts_ms)
        return due
