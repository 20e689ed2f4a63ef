"""``replay --annotate``: the video as the detector saw it, one output frame per frame read.

Each frame shows the no-parking zones, the stop line and the light's roi in the colour of
the signal the detector holds, every track's box with its id (green moving, blue standing,
grey not yet a vehicle), and each vehicle that has given an event in red, labelled with the
rule, for as long as it is tracked. A banner gives the time, frame and signal state.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from services.common.arrays import BGRImage
from services.common.config.scene import SceneConfig
from services.common.events import ViolationType
from services.detector.decode import decode_bgr
from services.detector.drawing import (
    VIOLATION_BGR,
    clock_text,
    draw_geometry,
    draw_track,
    scene_scale,
    stamp,
    track_colour,
)
from services.detector.result import FrameResult, SeenFrame

# Output container by file suffix: MJPG keeps every frame sharp and opens anywhere; MPEG-4
# part 2 is the codec every OpenCV build can write into an .mp4.
FOURCC_BY_SUFFIX = {".avi": "MJPG", ".mp4": "mp4v"}
_RULE_LABEL = {ViolationType.RED_LIGHT: "RED LIGHT", ViolationType.ILLEGAL_PARKING: "PARKING"}


class AnnotateError(RuntimeError):
    """The annotated video cannot be written (suffix, codec or path)."""


class Annotator:
    """Draws each frame's :class:`FrameResult` onto its image; remembers who offended."""

    def __init__(self, scene: SceneConfig) -> None:
        self._scene = scene
        self._offenders: dict[int, str] = {}

    def draw(self, image: BGRImage, result: FrameResult) -> BGRImage:
        """A copy of ``image`` with what the detector saw in ``result`` drawn on it."""
        canvas = image.copy()
        scale = scene_scale(self._scene, canvas.shape[1])
        present = {track.track_id for track in result.tracks}
        self._offenders = {k: v for k, v in self._offenders.items() if k in present}
        for event in result.events:
            self._offenders[event.track_id] = _RULE_LABEL[event.type]
        has_signal = self._scene.traffic_light is not None
        signal = result.signal if has_signal else None
        draw_geometry(canvas, self._scene, scale, signal=signal)
        held = f"signal {result.signal.value}  " if has_signal else ""
        lines = [
            clock_text(result.ts_ms),
            f"frame {result.frame}  {held}tracks {len(result.tracks)}",
        ]
        if result.dropped is not None:
            lines.append(f"DROPPED ({result.dropped}): previous image shown")
        lines.extend(f"VIOLATION {e.type.value} #{e.track_id}" for e in result.events)
        stamp(canvas, lines, signal=signal)
        # Tracks last, so that no banner hides a box's id.
        for track in result.tracks:
            offence = self._offenders.get(track.track_id)
            colour = VIOLATION_BGR if offence else track_colour(track)
            draw_track(canvas, track, scale, colour=colour, text=offence)
        return canvas


class AnnotatedVideoWriter:
    """Writes one annotated frame per frame read to an .avi or .mp4 file.

    A dropped frame repeats the last good image (black before the first), stamped as
    dropped, so the output has exactly as many frames as were read.
    """

    def __init__(
        self, path: Path, *, scene: SceneConfig, fps: float, frame_wh: tuple[int, int]
    ) -> None:
        fourcc = FOURCC_BY_SUFFIX.get(path.suffix.lower())
        if fourcc is None:
            raise AnnotateError(f"--annotate {path}: the file must end in .avi or .mp4")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, frame_wh)
        if not self._writer.isOpened():
            raise AnnotateError(f"--annotate {path}: cannot write a {fourcc} video there")
        self._annotator = Annotator(scene)
        self._frame_wh = frame_wh
        self._last: BGRImage = np.zeros((frame_wh[1], frame_wh[0], 3), np.uint8)
        self.frames_written = 0

    def __call__(self, seen: SeenFrame) -> None:
        if seen.frame is not None:
            image = decode_bgr(seen.frame)
            if (image.shape[1], image.shape[0]) == self._frame_wh:
                self._last = image
        self._writer.write(self._annotator.draw(self._last, seen.result))
        self.frames_written += 1

    def close(self) -> None:
        self._writer.release()
