"""Camera frames as they travel from a feed to the detectors, and the ``frames`` topic.

On Kafka a frame is its JPEG bytes, keyed by camera id (so one camera's frames stay in order
on one partition), with its camera id, frame index and capture time in headers.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.arrays import BGRImage
from services.common.bus import BusMessage, Headers, TopicSpec

FRAMES_TOPIC = TopicSpec(
    name="frames",
    partitions=8,
    # Frames are only useful live; an hour is enough to replay a short outage.
    retention_ms=3600 * 1000,
    max_message_bytes=4 * 1024 * 1024,
)

HEADER_CAMERA_ID = "camera_id"
HEADER_FRAME_INDEX = "frame_index"
HEADER_TS_MS = "ts_ms"


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: JPEG bytes, a decoded BGR image (H x W x 3 uint8), or both.

    ``index`` counts frames from the start of the feed (0-based) and ``ts_ms`` is the capture
    time in Unix milliseconds. A frame whose bytes cannot be decoded is corrupt; detectors
    skip and count it.
    """

    camera_id: str
    index: int
    ts_ms: int
    jpeg: bytes | None = None
    bgr: BGRImage | None = None

    def __post_init__(self) -> None:
        if self.jpeg is None and self.bgr is None:
            raise ValueError("a Frame needs jpeg bytes or a bgr image")

    def headers(self) -> Headers:
        """Kafka headers for the ``frames`` topic."""
        return (
            (HEADER_CAMERA_ID, self.camera_id.encode()),
            (HEADER_FRAME_INDEX, str(self.index).encode()),
            (HEADER_TS_MS, str(self.ts_ms).encode()),
        )


class FrameHeaderError(ValueError):
    """A ``frames`` message without the headers that place it."""


def frame_from_message(message: BusMessage) -> Frame:
    """Rebuild a :class:`Frame` from a ``frames`` topic message (the JPEG stays encoded)."""
    try:
        camera_id = (message.header(HEADER_CAMERA_ID) or message.key or b"").decode()
        index = int(message.header(HEADER_FRAME_INDEX) or b"")
        ts_ms = int(message.header(HEADER_TS_MS) or b"")
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameHeaderError(
            f"frames message at {message.topic}/{message.partition}@{message.offset} lacks "
            f"valid {HEADER_CAMERA_ID}/{HEADER_FRAME_INDEX}/{HEADER_TS_MS} headers: {exc}"
        ) from None
    if not camera_id:
        raise FrameHeaderError("frames message has no camera id header or key")
    return Frame(camera_id=camera_id, index=index, ts_ms=ts_ms, jpeg=message.value)
