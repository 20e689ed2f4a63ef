"""What the detector saw in one frame: the typed record behind ``replay --trace`` and
``--annotate``, and the track history that evidence panels are cut from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.arrays import PointXY
from services.common.boxes import box_centre
from services.common.events import ViolationEvent
from services.common.frames import Frame
from services.detector.signal import LightState


@dataclass(frozen=True, slots=True)
class SeenTrack:
    """One track as the rules saw it in a frame; ``bbox_xywh`` is in scene pixels."""

    track_id: int
    bbox_xywh: tuple[int, int, int, int]
    stationary: bool
    # Seen several times and seen travelling: a vehicle, not a flicker.
    established: bool
    # The box is the tracker's prediction: no blob of this frame was the vehicle's own (it
    # merged with another, or the background swallowed it). A rule sees no move meanwhile.
    coasting: bool = False

    @property
    def centre_xy(self) -> PointXY:
        return box_centre(self.bbox_xywh)


@dataclass(frozen=True, slots=True)
class FrameResult:
    """The detector's state after one frame read, and the events that frame produced.

    For a frame that could not be used, ``dropped`` names why, and the signal and tracks
    are the ones the detector still holds.
    """

    frame: int
    ts_ms: int
    signal: LightState
    tracks: tuple[SeenTrack, ...]
    events: tuple[ViolationEvent, ...] = ()
    dropped: str | None = None

    def track(self, track_id: int) -> SeenTrack | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)

    def to_trace(self) -> dict[str, Any]:
        """The contracts' trace line (Replay, ``--trace``), with ``dropped`` added when set.

        >>> (line,) = FrameResult(frame=3, ts_ms=1000, signal=LightState.RED,
        ...     tracks=(SeenTrack(7, (1, 2, 3, 4), False, True),)).to_trace()["tracks"]
        >>> line["track_id"], line["bbox_xywh"], line["stationary"], line["coasting"]
        (7, [1, 2, 3, 4], False, False)
        """
        line: dict[str, Any] = {
            "frame": self.frame,
            "ts_ms": self.ts_ms,
            "signal": self.signal.value,
            "tracks": [
                {
                    "track_id": t.track_id,
                    "bbox_xywh": list(t.bbox_xywh),
                    "stationary": t.stationary,
                    "established": t.established,
                    "coasting": t.coasting,
                }
                for t in self.tracks
            ],
            "events": [event.violation_id for event in self.events],
        }
        if self.dropped is not None:
            line["dropped"] = self.dropped
        return line


@dataclass(frozen=True, slots=True)
class SeenFrame:
    """A frame read and what the detector saw in it, as per-frame sinks receive it.

    ``frame`` is ``None`` when the frame could not be used (``result.dropped`` says why).
    """

    camera_id: str
    frame: Frame | None
    result: FrameResult
