"""Frame sources: the simulator, a recorded video file, and the Kafka ``frames`` topic.

Each yields :class:`Frame` objects in order, and a :class:`DroppedFrame` for anything it
had to skip, so the worker can count it without the source knowing about metrics.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.common.bus.kafka import KafkaBus
from services.common.config.scene import SceneConfig
from services.common.frames import FRAMES_TOPIC, Frame, FrameHeaderError, frame_from_message

# A fixed, recognisable epoch (2024-01-01T00:00:00Z) that replay timestamps are offset from.
REPLAY_EPOCH_MS = 1_704_067_200_000
# A broken file rarely has more than a few bad frames in a row; this many means it has ended.
_MAX_CONSECUTIVE_FAILURES = 50


@dataclass(frozen=True, slots=True)
class DroppedFrame:
    """A frame the source could not deliver (``reason`` labels the drop metric)."""

    camera_id: str
    index: int
    reason: str


SourceItem = Frame | DroppedFrame


class VideoOpenError(RuntimeError):
    """The file is missing, or no frame of it can be decoded."""


def default_start_ts_ms(path: Path) -> int:
    """A deterministic capture time for a file: the replay epoch plus a hash of its content.

    The same file always replays with the same timestamps, so its events keep their
    ``violation_id``s; two different files do not collide on them.
    """
    digest = hashlib.sha256()
    digest.update(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    # Whole seconds within about a year after the epoch: plausible dates, readable ids.
    return REPLAY_EPOCH_MS + (int(digest.hexdigest()[:12], 16) % (365 * 86_400)) * 1000


class VideoFileSource:
    """Frames of a video file. MJPG frames are passed on still encoded, so the detector can
    decode them at reduced scale; other codecs are decoded to BGR by FFmpeg."""

    def __init__(
        self, path: Path, *, camera_id: str, fps: float, start_ts_ms: int | None = None
    ) -> None:
        """``start_ts_ms`` is frame 0's capture time; by default :func:`default_start_ts_ms`."""
        if not path.is_file():
            raise VideoOpenError(f"{path}: no such file")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise VideoOpenError(f"{path}: not a video this OpenCV build can open")
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
        self.codec = fourcc.decode("ascii", errors="replace").strip("\x00 ")
        self._raw_jpeg = fourcc == b"MJPG" and bool(capture.set(cv2.CAP_PROP_FORMAT, -1))
        self.frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        ok, first = capture.read()
        if not ok or first is None or not self._usable(first):
            capture.release()
            raise VideoOpenError(f"{path}: cannot decode its first frame (codec {self.codec!r})")
        self._capture = capture
        self._first = first
        self._camera_id = camera_id
        self._fps = fps
        self._start_ts_ms = default_start_ts_ms(path) if start_ts_ms is None else start_ts_ms

    def _usable(self, data: np.ndarray) -> bool:
        if self._raw_jpeg:
            return cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None
        return data.ndim == 3 and data.size > 0

    def __iter__(self) -> Iterator[SourceItem]:
        capture = self._capture
        data: np.ndarray | None = self._first
        index, failures = 0, 0
        try:
            while failures < _MAX_CONSECUTIVE_FAILURES:
                if data is None:
                    failures += 1
                    if index >= self.frame_count:  # read past the last frame: the end
                        return
                    yield DroppedFrame(camera_id=self._camera_id, index=index, reason="read")
                else:
                    failures = 0
                    yield self._frame(index, data)
                index += 1
                ok, image = capture.read()
                data = image if ok else None
        finally:
            capture.release()

    def _frame(self, index: int, data: np.ndarray) -> Frame:
        ts_ms = self._start_ts_ms + round(index * 1000 / self._fps)
        if self._raw_jpeg:
            return Frame(camera_id=self._camera_id, index=index, ts_ms=ts_ms, jpeg=data.tobytes())
        return Frame(camera_id=self._camera_id, index=index, ts_ms=ts_ms, bgr=data)


class SimulatorSource:
    """A simulated camera (``simulators.feed``), as JPEG frames like a real feed sends."""

    def __init__(
        self, camera_id: str, *, seconds: float, seed: int = 0, variant: str = "day"
    ) -> None:
        from simulators.feed import simulate_camera

        self._camera = simulate_camera(camera_id, seconds=seconds, seed=seed, variant=variant)
        self.scene: SceneConfig = self._camera.scene

    def __iter__(self) -> Iterator[SourceItem]:
        yield from self._camera.jpeg_frames(quality=85)


class KafkaFrameSource:
    """Frames of many cameras from the Kafka ``frames`` topic, until ``stop`` is set.

    The cameras are shared out by the consumer group: each partition (a set of cameras,
    as frames are keyed by camera) has one owner. A batch is committed when the next one is
    polled, that is, after the worker has processed every frame of it: a crash replays at
    most one batch (at-least-once). A partition taken over from another detector starts
    ``handover_replay_s`` back, its already handled frames marked ``replay`` (see
    :class:`~services.common.bus.kafka.HandoverReplay`). ``on_lag`` gets the consumer's
    lag per partition after every poll.
    """

    def __init__(
        self,
        bus: KafkaBus,
        *,
        group_id: str,
        stop: threading.Event,
        handover_replay_s: float = 0.0,
        session_timeout_s: float | None = None,
        on_lag: Callable[[dict[tuple[str, int], int]], None] | None = None,
    ) -> None:
        bus.ensure_topics([FRAMES_TOPIC])
        self._consumer = bus.subscribe(
            [FRAMES_TOPIC.name],
            group_id=group_id,
            handover_replay_s=handover_replay_s,
            session_timeout_s=session_timeout_s,
        )
        self._stop = stop
        self._on_lag = on_lag

    def __iter__(self) -> Iterator[SourceItem]:
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_s=0.5, max_records=200)
                if self._on_lag is not None:
                    self._on_lag(self._consumer.lag())
                for message in batch:
                    try:
                        yield frame_from_message(message)
                    except FrameHeaderError:
                        camera = (message.key or b"unknown").decode(errors="replace")
                        yield DroppedFrame(camera_id=camera, index=-1, reason="headers")
                if batch:
                    self._consumer.commit(batch)
        finally:
            self._consumer.close()
