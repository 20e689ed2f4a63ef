"""Evidence sheets for each violation, cut from a bounded ring of each camera's recent frames.

* red light: the vehicle before the line, at the crossing and past the line;
* illegal parking: the vehicle first seen in the zone, and at the violation.

The "past the line" panel lies in the future when the event is raised, so the event names
its sheet (``evidence_panels``) at once, and the sheet is written as soon as that frame
arrives (about ``follow_s`` later), when the vehicle is lost, or when the feed ends.

Memory is bounded per camera: ``ring_s`` of frames, one JPEG frame per track in a
no-parking zone (where its stay began), and the camera's first frame (as JPEG). JPEG feeds
(simulator, Kafka, MJPG files) are held as the bytes they arrived in, at no CPU cost.
Decoded (BGR) feeds, from H.264 files, are thinned to one frame every ``sample_ms`` and
held raw: encoding them would cost about half the detector's own time per frame at 1080p
(``bench/evidence.py``), and a 1080p ring is then about 100 MB. Only a clip (``clip_s``)
makes the recorder encode every decoded frame.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from services.common.config.scene import SceneConfig
from services.common.events import ViolationEvent, ViolationType
from services.common.frames import Frame
from services.detector.decode import decode_bgr
from services.detector.evidence import evidence_path
from services.detector.geometry import point_in_polygon
from services.detector.panels import Panel, compose_panels
from services.detector.result import FrameResult

PANELS_FIELD = "evidence_panels"
PANELS_SUFFIX = "-panels.jpg"
CLIP_FIELD = "evidence_clip"
CLIP_SUFFIX = "-clip.avi"


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    """How much history each camera keeps, and where the panels are taken from it."""

    # The "before" panel is lead_s before the crossing, which is judged a few frames late.
    ring_s: float = 2.5
    lead_s: float = 1.0
    follow_s: float = 1.0
    # Decoded feeds keep one frame per this many ms (4 a second, as enforcement cameras take).
    sample_ms: int = 250
    # The newest frames, kept whatever the feed: the crossing is judged a few frames late.
    recent_frames: int = 6
    max_zone_tracks: int = 64
    jpeg_quality: int = 90
    # A clip of this many seconds either side of each violation (0: none). Decoded feeds then
    # keep every frame of the ring, JPEG-encoded, which costs an encode per frame.
    clip_s: float = 0.0

    @property
    def history_s(self) -> float:
        # A clip starts clip_s before the violation, which is raised up to a second later.
        return max(self.ring_s, self.clip_s + 1.0) if self.clip_s else self.ring_s


@dataclass(frozen=True, slots=True)
class _Kept:
    frame: Frame
    result: FrameResult


@dataclass
class _RedLightJob:
    scene: SceneConfig
    event: ViolationEvent
    before: _Kept
    at: _Kept
    due_ts_ms: int
    give_up_ts_ms: int
    after: _Kept | None = None


@dataclass
class _ClipJob:
    event: ViolationEvent
    fps: float
    end_ts_ms: int
    frames: list[Frame]


@dataclass
class _Camera:
    history: deque[_Kept] = field(default_factory=deque)
    recent: deque[_Kept] = field(default_factory=deque)
    zone_entries: dict[int, _Kept] = field(default_factory=dict)
    # The camera's first frame, for a vehicle that stood in a zone from it (found when it
    # leaves, long after the ring has let that frame go).
    first: _Kept | None = None
    # The scene's zones in scene pixels, built on the camera's first frame.
    zone_polygons: list[npt.NDArray[np.float32]] | None = None
    jobs: list[_RedLightJob] = field(default_factory=list)
    clips: list[_ClipJob] = field(default_factory=list)


class EvidenceRecorder:
    """Keeps each camera's recent frames, and writes a panel sheet for every violation."""

    def __init__(self, root: Path, *, settings: RecorderSettings | None = None) -> None:
        self._root = root
        self._settings = settings or RecorderSettings()
        self._cameras: dict[str, _Camera] = {}
        self.sheets_written = 0
        self.clips_written = 0

    def observe(self, scene: SceneConfig, frame: Frame, result: FrameResult) -> FrameResult:
        """Remember ``frame``; returns ``result`` with each event naming its sheet."""
        camera = self._cameras.setdefault(scene.camera_id, _Camera())
        settings = self._settings
        kept = _Kept(frame=frame, result=result)
        camera.recent.append(kept)
        if camera.first is None:
            camera.first = self._compact(kept)
        while len(camera.recent) > settings.recent_frames:
            camera.recent.popleft()
        self._remember(camera, kept)
        self._note_zone_entries(scene, camera, kept)
        self._advance_jobs(scene, camera, kept)
        self._advance_clips(camera)
        if not result.events:
            return result
        events = tuple(self._start(scene, camera, kept, event) for event in result.events)
        if settings.clip_s:
            events = tuple(self._start_clip(scene, camera, event) for event in events)
        return dataclasses.replace(result, events=events)

    def close(self) -> None:
        """Write every sheet and clip still waiting for frames, with what there is."""
        for camera in self._cameras.values():
            for job in camera.jobs:
                self._finish(job)
            camera.jobs.clear()
            for clip in camera.clips:
                self._write_clip(clip)
            camera.clips.clear()

    def held_frames(self) -> int:
        """Frames held across all cameras (for measuring the ring's cost)."""
        return sum(
            len(c.history) + len(c.recent) + len(c.zone_entries) + (c.first is not None)
            for c in self._cameras.values()
        )

    def held_bytes(self) -> int:
        """Image bytes held across all cameras (shared frames counted once)."""
        frames = {
            id(k.frame): k.frame
            for c in self._cameras.values()
            for k in (*c.history, *c.recent, *c.zone_entries.values(), *filter(None, [c.first]))
        }
        return sum(
            len(f.jpeg) if f.jpeg is not None else (f.bgr.nbytes if f.bgr is not None else 0)
            for f in frames.values()
        )

    def _remember(self, camera: _Camera, kept: _Kept) -> None:
        settings = self._settings
        history = camera.history
        if kept.frame.jpeg is not None:
            history.append(kept)
        elif settings.clip_s:
            history.append(self._compact(kept))
        elif not history or kept.result.ts_ms - history[-1].result.ts_ms >= settings.sample_ms:
            history.append(kept)
        horizon = kept.result.ts_ms - round(settings.history_s * 1000)
        while history and history[0].result.ts_ms < horizon:
            history.popleft()

    def _compact(self, kept: _Kept) -> _Kept:
        """The frame as JPEG bytes, for holding it long (a zone entry) or for a clip."""
        if kept.frame.jpeg is not None or kept.frame.bgr is None:
            return kept
        ok, data = cv2.imencode(
            ".jpg", kept.frame.bgr, [cv2.IMWRITE_JPEG_QUALITY, self._settings.jpeg_quality]
        )
        if not ok:
            return kept
        frame = dataclasses.replace(kept.frame, bgr=None, jpeg=data.tobytes())
        return _Kept(frame=frame, result=kept.result)

    def _note_zone_entries(self, scene: SceneConfig, camera: _Camera, kept: _Kept) -> None:
        present = {t.track_id for t in kept.result.tracks}
        for track_id in [t for t in camera.zone_entries if t not in present]:
            del camera.zone_entries[track_id]
        if not scene.no_parking_zones:
            return
        if camera.zone_polygons is None:
            camera.zone_polygons = [np.array(z.polygon, np.float32) for z in scene.no_parking_zones]
        polygons = camera.zone_polygons
        for track in kept.result.tracks:
            if track.track_id in camera.zone_entries:
                continue
            if len(camera.zone_entries) >= self._settings.max_zone_tracks:
                return
            if any(point_in_polygon(track.centre_xy, polygon) for polygon in polygons):
                camera.zone_entries[track.track_id] = self._compact(kept)

    def _start(
        self, scene: SceneConfig, camera: _Camera, now: _Kept, event: ViolationEvent
    ) -> ViolationEvent:
        held = [*camera.history, *camera.recent, now]
        at = min(held, key=lambda k: (abs(k.frame.index - event.frame), -k.frame.index))
        earlier = sorted(
            (k for k in held if k.frame.index < at.frame.index), key=lambda k: k.frame.index
        )
        with_track = [k for k in earlier if k.result.track(event.track_id) is not None]
        if event.type == ViolationType.RED_LIGHT:
            lead_ts_ms = at.result.ts_ms - round(self._settings.lead_s * 1000)
            before = next(
                (k for k in reversed(with_track) if k.result.ts_ms <= lead_ts_ms),
                with_track[0] if with_track else (earlier[0] if earlier else at),
            )
            follow_ms = round(self._settings.follow_s * 1000)
            camera.jobs.append(
                _RedLightJob(
                    scene=scene,
                    event=event,
                    before=before,
                    at=at,
                    due_ts_ms=at.result.ts_ms + follow_ms,
                    give_up_ts_ms=at.result.ts_ms + 2 * follow_ms,
                )
            )
        elif event.frame < at.frame.index and camera.first is not None:
            # It stood in the zone from the first frame, and was found only when it left.
            start = camera.first
            self._write(
                scene,
                event,
                [
                    Panel("1 in the zone at the first frame", start.frame, start.result, True),
                    Panel("2 its place when found, after it left", now.frame, now.result),
                ],
            )
        else:
            first = camera.zone_entries.get(event.track_id) or (with_track[0] if with_track else at)
            self._write(
                scene,
                event,
                [
                    Panel("1 first seen in the zone", first.frame, first.result),
                    Panel("2 at the violation", at.frame, at.result),
                ],
            )
        return event.model_copy(
            update={PANELS_FIELD: str(evidence_path(self._root, event, PANELS_SUFFIX))}
        )

    def _advance_jobs(self, scene: SceneConfig, camera: _Camera, now: _Kept) -> None:
        still: list[_RedLightJob] = []
        for job in camera.jobs:
            seen = now.result.track(job.event.track_id) is not None
            if seen and now.frame.index > job.at.frame.index:
                job.after = now
            if (seen and now.result.ts_ms >= job.due_ts_ms) or (
                now.result.ts_ms >= job.give_up_ts_ms
            ):
                self._finish(job)
            else:
                still.append(job)
        camera.jobs = still

    def _finish(self, job: _RedLightJob) -> None:
        after = job.after or job.at
        self._write(
            job.scene,
            job.event,
            [
                Panel("1 before the line", job.before.frame, job.before.result),
                Panel("2 crossing the line", job.at.frame, job.at.result),
                Panel("3 past the line", after.frame, after.result),
            ],
        )

    def _start_clip(
        self, scene: SceneConfig, camera: _Camera, event: ViolationEvent
    ) -> ViolationEvent:
        clip_ms = round(self._settings.clip_s * 1000)
        camera.clips.append(
            _ClipJob(
                event=event,
                fps=scene.fps,
                end_ts_ms=event.ts_ms + clip_ms,
                frames=[k.frame for k in camera.history if k.result.ts_ms >= event.ts_ms - clip_ms],
            )
        )
        return event.model_copy(
            update={CLIP_FIELD: str(evidence_path(self._root, event, CLIP_SUFFIX))}
        )

    def _advance_clips(self, camera: _Camera) -> None:
        """Adds the newest frame (as the ring holds it) to each clip; writes finished ones."""
        if not camera.clips or not camera.history:
            return
        newest = camera.history[-1]
        still: list[_ClipJob] = []
        for clip in camera.clips:
            if newest.result.ts_ms > clip.end_ts_ms:
                self._write_clip(clip)
                continue
            if not clip.frames or clip.frames[-1].index < newest.frame.index:
                clip.frames.append(newest.frame)
            still.append(clip)
        camera.clips = still

    def _write_clip(self, clip: _ClipJob) -> None:
        """The clip as MJPG AVI, frames as captured (nothing drawn on evidence footage)."""
        if not clip.frames:
            return
        images = [decode_bgr(frame) for frame in clip.frames]
        height, width = images[0].shape[:2]
        path = evidence_path(self._root, clip.event, CLIP_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter.fourcc(*"MJPG"), clip.fps, (width, height)
        )
        try:
            for image in images:
                if image.shape[:2] == (height, width):
                    writer.write(image)
        finally:
            writer.release()
        self.clips_written += 1

    def _write(self, scene: SceneConfig, event: ViolationEvent, panels: list[Panel]) -> None:
        sheet = compose_panels(scene=scene, event=event, panels=panels)
        path = evidence_path(self._root, event, PANELS_SUFFIX)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, self._settings.jpeg_quality])
        self.sheets_written += 1
