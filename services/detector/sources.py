"""Frame sources: a recorded video file, the Kafka ``frames`` topic (live, as a consumer
group's member, or one camera's history), and registered scene sources (the simulator,
which the console script registers as ``sim:``).

Each yields :class:`Frame` objects in order, and a :class:`DroppedFrame` for anything it
had to skip, so the worker can count it without the source knowing about metrics.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from services.common.bus import BusError, BusMessage
from services.common.bus.kafka import KafkaBus
from services.common.config.scene import SceneConfig
from services.common.frames import FRAMES_TOPIC, Frame, FrameHeaderError, frame_from_message
from services.detector.container import Truncation, find_truncation

log = logging.getLogger(__name__)

# A fixed, recognisable epoch (2024-01-01T00:00:00Z) that replay timestamps are offset from.
REPLAY_EPOCH_MS = 1_704_067_200_000
# A broken file rarely has more than a few bad frames in a row; this many means it has ended.
_MAX_CONSECUTIVE_FAILURES = 50
# How often a Kafka source commits what it has handled. Each commit is a round trip that
# stalls the detector and a write to the broker's offsets log; committing every poll (one
# or two frames under load) cost both on every frame. A crash replays at most this much.
COMMIT_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class DroppedFrame:
    """A frame the source could not deliver (``reason`` labels the drop metric)."""

    camera_id: str
    index: int
    reason: str
    # Where the frame would have been, when the source can tell.
    ts_ms: int | None = None


SourceItem = Frame | DroppedFrame

# How long after its capture a camera's frame may reach Kafka and still be replayed.
SEND_SLACK_MS = 10_000


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


class StreamClock:
    """Frame times from the stream's own presentation timestamps, in ms since its start.

    A frame without a usable timestamp (none, or not after the previous one) is placed one
    nominal frame period after the previous frame, so times always increase.

    >>> clock = StreamClock(fps=10)
    >>> [clock.stamp(t) for t in (0.0, 40.0, 40.0, None, 1000.4)]
    [0, 40, 140, 240, 1000]
    >>> clock.next_estimate_ms(), clock.next_estimate_ms(ahead=3)
    (1100, 1300)
    """

    def __init__(self, *, fps: float) -> None:
        self._period_ms = 1000 / fps
        self._last_ms: float | None = None

    def stamp(self, pts_ms: float | None) -> int:
        last = self._last_ms
        if pts_ms is None or pts_ms < 0 or (last is not None and pts_ms <= last):
            pts_ms = 0.0 if last is None else last + self._period_ms
        self._last_ms = pts_ms
        return round(pts_ms)

    def next_estimate_ms(self, *, ahead: int = 1) -> int:
        """Where the frame ``ahead`` frames on would be at the nominal rate (for a frame
        that failed); before any frame, frame ``ahead - 1`` of the stream."""
        if self._last_ms is None:
            return round((ahead - 1) * self._period_ms)
        return round(self._last_ms + ahead * self._period_ms)


@dataclass
class VideoReadReport:
    """What a read of the file found, beyond the frames: for the replay's summary."""

    claimed_frames: int
    frames_decoded: int = 0
    # Frames that failed between good ones: real losses, counted as drops.
    frames_lost: int = 0
    truncation: Truncation | None = None

    def notes(self, path: Path) -> list[str]:
        """Lines worth telling the user; empty for a clean file."""
        if self.truncation is not None:
            return [
                f"{self.truncation.describe(path)}; {self.frames_decoded} frames were "
                f"decoded before its end, of the {self.claimed_frames} the container lists"
            ]
        held = self.frames_decoded + self.frames_lost
        if self.claimed_frames > held:
            return [
                f"the container lists {self.claimed_frames} frames, its stream holds "
                f"{held} (an edit list or a wrong header; not counted as drops)"
            ]
        return []


@dataclass(frozen=True, slots=True)
class _Failure:
    index: int
    ts_ms: int
    reason: str


class VideoFileSource:
    """Frames of a video file, timed by the stream's own timestamps.

    MJPG frames are passed on still encoded, so the detector can decode them at reduced
    scale; other codecs are decoded to BGR by FFmpeg. A frame that fails is reported as a
    :class:`DroppedFrame` only once a good frame follows it: failures at the end are the end
    of the stream (a container that lists more frames than it holds, or a truncated file,
    which :attr:`report` names), not frames lost.
    """

    def __init__(
        self, path: Path, *, camera_id: str, fps: float, start_ts_ms: int | None = None
    ) -> None:
        """``start_ts_ms`` is frame 0's capture time; by default :func:`default_start_ts_ms`."""
        if not path.is_file():
            raise VideoOpenError(f"{path}: no such file")
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise VideoOpenError(f"{path}: not a video this OpenCV build can open")
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
        self.codec = fourcc.decode("ascii", errors="replace").strip("\x00 ")
        self._raw_jpeg = fourcc == b"MJPG" and bool(capture.set(cv2.CAP_PROP_FORMAT, -1))
        self.frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.resolution_wh = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.report = VideoReadReport(
            claimed_frames=self.frame_count, truncation=find_truncation(path)
        )
        self._capture = capture
        self._camera_id = camera_id
        self._clock = StreamClock(fps=fps)
        self._start_ts_ms = default_start_ts_ms(path) if start_ts_ms is None else start_ts_ms
        self._leading: list[_Failure] = []
        self._first = self._first_good()
        if self._first is None:
            capture.release()
            raise VideoOpenError(
                f"{path}: cannot decode any of its first {len(self._leading)} frames "
                f"(codec {self.codec!r})"
            )

    def _first_good(self) -> np.ndarray | None:
        """Reads up to the first usable frame; a bad first frame does not condemn a file."""
        for index in range(_MAX_CONSECUTIVE_FAILURES):
            ok, data = self._capture.read()
            if not ok:
                if index >= self.frame_count:
                    return None
                reason = "read"
            elif self._usable(data):
                return np.asarray(data)
            else:
                reason = "decode"
            self._leading.append(self._failure(index, reason, ahead=index + 1))
        return None

    def _usable(self, data: np.ndarray) -> bool:
        if self._raw_jpeg:
            return cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None
        return data.ndim == 3 and data.size > 0

    def _failure(self, index: int, reason: str, *, ahead: int) -> _Failure:
        estimate_ms = self._clock.next_estimate_ms(ahead=ahead)
        return _Failure(index=index, ts_ms=self._start_ts_ms + estimate_ms, reason=reason)

    def __iter__(self) -> Iterator[SourceItem]:
        capture = self._capture
        # A truncated MJPG file's last frame is usually cut in two: check each frame's JPEG
        # there, so that the cut one is seen as the end rather than as a frame lost.
        check = self._raw_jpeg and self.report.truncation is not None
        pending = list(self._leading)
        data: np.ndarray | None = self._first
        index = len(pending)
        try:
            while len(pending) < _MAX_CONSECUTIVE_FAILURES:
                cut = (
                    check
                    and data is not None
                    and index > len(self._leading)
                    and not self._usable(data)
                )
                if data is None or cut:
                    reason = "read" if data is None else "decode"
                    pending.append(self._failure(index, reason, ahead=len(pending) + 1))
                else:
                    yield from (self._dropped(failure) for failure in pending)
                    self.report.frames_lost += len(pending)
                    pending.clear()
                    self.report.frames_decoded += 1
                    yield self._frame(index, data)
                index += 1
                ok, image = capture.read()
                data = image if ok else None
        finally:
            capture.release()

    def _dropped(self, failure: _Failure) -> DroppedFrame:
        return DroppedFrame(
            camera_id=self._camera_id,
            index=failure.index,
            reason=failure.reason,
            ts_ms=failure.ts_ms,
        )

    def _frame(self, index: int, data: np.ndarray) -> Frame:
        ts_ms = self._start_ts_ms + self._clock.stamp(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        if self._raw_jpeg:
            return Frame(camera_id=self._camera_id, index=index, ts_ms=ts_ms, jpeg=data.tobytes())
        return Frame(camera_id=self._camera_id, index=index, ts_ms=ts_ms, bgr=data)


class SceneSource(Protocol):
    """A feed that brings its own scene, such as a simulated camera."""

    @property
    def scene(self) -> SceneConfig: ...

    def __iter__(self) -> Iterator[SourceItem]: ...


@dataclass(frozen=True, slots=True)
class SceneSourceOptions:
    """What ``citybrain detect`` passes every scene source: how long, and which look."""

    seconds: float
    variant: str


SceneSourceFactory = Callable[[str, SceneSourceOptions], SceneSource]

# Filled by the console script (the composition root): services never import simulators.
_SCENE_SOURCES: dict[str, SceneSourceFactory] = {}


def register_scene_source(scheme: str, factory: SceneSourceFactory) -> None:
    """Let ``--source SCHEME:ARGUMENT`` open ``factory(ARGUMENT, options)``."""
    _SCENE_SOURCES[scheme] = factory


def scene_source_schemes() -> list[str]:
    """The schemes registered, sorted."""
    return sorted(_SCENE_SOURCES)


def open_scene_source(spec: str, options: SceneSourceOptions) -> SceneSource | None:
    """The source ``spec`` (``SCHEME:ARGUMENT``) names, or None if no scheme of it is
    registered."""
    scheme, colon, argument = spec.partition(":")
    factory = _SCENE_SOURCES.get(scheme)
    if not colon or factory is None:
        return None
    return factory(argument, options)


def _item(message: BusMessage) -> SourceItem:
    """A ``frames`` message's frame, or a dropped frame for one without the headers that
    place it (named by its key)."""
    try:
        return frame_from_message(message)
    except FrameHeaderError:
        camera = (message.key or b"unknown").decode(errors="replace")
        return DroppedFrame(camera_id=camera, index=-1, reason="headers")


class KafkaCameraHistory:
    """One camera's frames from the ``frames`` topic, captured between two times: what a
    stack's detectors were fed, to replay with a trace or an annotated video while the
    topic still keeps them (its retention). Read without a consumer group, so a running
    stack is not disturbed.

    Frames are looked for among those sent up to ``SEND_SLACK_MS`` after the window, since
    a camera sends each frame after capturing it; a message without the headers that place
    it is a dropped frame.
    """

    def __init__(self, bus: KafkaBus, *, camera_id: str, since_ms: int, until_ms: int) -> None:
        self.camera_id = camera_id
        self._bus = bus
        self._since_ms = since_ms
        self._until_ms = until_ms

    def __iter__(self) -> Iterator[SourceItem]:
        messages = self._bus.history(
            FRAMES_TOPIC.name,
            key=self.camera_id.encode(),
            since_ms=self._since_ms,
            until_ms=self._until_ms + SEND_SLACK_MS,
        )
        for message in messages:
            item = _item(message)
            if isinstance(item, DroppedFrame) or self._since_ms <= item.ts_ms <= self._until_ms:
                yield item


class KafkaFrameSource:
    """Frames of many cameras from the Kafka ``frames`` topic, until ``stop`` is set.

    The cameras are shared out by the consumer group: each partition (a set of cameras,
    as frames are keyed by camera) has one owner. What the worker has processed is
    committed every ``COMMIT_INTERVAL_S`` and when the source stops: a crash replays at most
    that much (at-least-once; the dispatcher drops what it has seen). A partition taken
    over from another detector starts ``handover_replay_s`` back, its already handled
    frames marked ``replay`` (see :class:`~services.common.bus.kafka.HandoverReplay`).
    ``on_lag`` gets the consumer's lag per partition after every poll; ``on_commit_failed``
    is called for each commit that failed (it is tried again at the next interval).
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
        on_commit_failed: Callable[[], None] | None = None,
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
        self._on_commit_failed = on_commit_failed

    def __iter__(self) -> Iterator[SourceItem]:
        # The last handled message of each partition, committed every COMMIT_INTERVAL_S.
        handled: dict[tuple[str, int], BusMessage] = {}
        committed_at = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_s=0.5, max_records=200)
                if self._on_lag is not None:
                    self._on_lag(self._consumer.lag())
                for message in batch:
                    yield _item(message)
                    if not message.replayed:
                        handled[(message.topic, message.partition)] = message
                if handled and time.monotonic() - committed_at >= COMMIT_INTERVAL_S:
                    committed_at = time.monotonic()
                    # A failed commit (the broker went away) is tried again, with the latest
                    # offsets, at the next interval; a crash meanwhile only reads these
                    # frames again.
                    if self._commit(handled, otherwise="tried again at the next interval"):
                        handled = {}
        finally:
            # Also when the reader stops taking frames (the detector stopped): the next
            # owner then starts where this one ended.
            try:
                if handled:
                    self._commit(handled, otherwise="the next owner reads them again")
            finally:
                self._consumer.close()

    def _commit(self, handled: dict[tuple[str, int], BusMessage], *, otherwise: str) -> bool:
        """Commit the handled offsets; on failure log, count, and return False."""
        try:
            self._consumer.commit(list(handled.values()))
        except BusError as exc:
            log.warning("frames since the last commit not committed (%s): %s", otherwise, exc)
            if self._on_commit_failed is not None:
                self._on_commit_failed()
            return False
        return True
