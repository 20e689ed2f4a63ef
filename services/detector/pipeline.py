"""One camera's detector: frames in, violation events out.

The stages run in the order the data flows: decode to a small greyscale image, read the
light, update the background and cut out blobs, track them, apply the rules. Nothing here
reads a clock or talks to a broker; timing and signal changes are reported to an optional
observer, and evidence goes to an optional sink, both supplied by the caller.
"""

from __future__ import annotations

from collections import deque
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import cv2
import numpy as np

from services.common.config.scene import LampLayout, SceneConfig
from services.common.events import ViolationEvent
from services.common.frames import Frame
from services.detector.background import SelectiveBackground
from services.detector.blobs import find_blobs
from services.detector.decode import (
    GreyImage,
    WorkingDecoder,
    WorkingPicture,
    colour_reduction_for,
    reduction_for,
    source_size,
)
from services.detector.evidence import EvidenceSink
from services.detector.geometry import BoxXYWH, Scale
from services.detector.persistence import PersistentForeground
from services.detector.rules import ParkingRule, RedLightRule, RuleHit, Zone
from services.detector.signal import (
    LightState,
    SignalTimeline,
    crop_head,
    read_lamp_head,
)
from services.detector.tracker import Track, Tracker, TrackerSettings

# A standing track must look like a ghost this many frames running before it is dropped.
GHOST_FRAMES = 5


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """Tuning that is the same for every camera; sizes are fractions of the frame width."""

    # 320 px keeps a small car at 1080p (~90 px long) about 20 px long after 1/4 scaling.
    min_working_width: int = 320
    min_vehicle_area_frac: float = 0.0012
    confirm_frames: int = 3
    # A JPEG's colour picture keeps the lamp head at least this long (along its lamps): real
    # heads read down to about 8 px and not below (bench/signal_accuracy.py, cspr12-evening).
    min_head_px: float = 8.0
    stationary_tol_frac: float = 0.008
    moved_frac: float = 0.04


class PipelineObserver(Protocol):
    def stage(self, name: str) -> AbstractContextManager[None]:
        """Times one stage (decode, signal, motion, track, rules)."""
        ...

    def signal_changed(self, state: LightState) -> None: ...


class _NullObserver:
    # One reusable do-nothing context for every stage of every frame: a generator-based
    # context manager would be built afresh five times a frame.
    _nothing: AbstractContextManager[None] = nullcontext()

    def stage(self, name: str) -> AbstractContextManager[None]:
        return self._nothing

    def signal_changed(self, state: LightState) -> None:
        return None


class _Geometry:
    """The scene, scaled once to working pixels."""

    def __init__(self, scene: SceneConfig, scale: Scale, *, source_per_scene_px: float) -> None:
        self.scale = scale
        # The lamp head is read from a colour picture whose size depends on the frame's
        # kind (decoded or JPEG), so its roi stays in source pixels here.
        self.source_per_scene_px = source_per_scene_px
        self.red_light: RedLightRule | None = None
        if scene.stop_line is not None:
            a, b = scene.stop_line.points
            self.red_light = RedLightRule(
                line_xy=(scale.to_work(a), scale.to_work(b)),
                travel_direction=scene.stop_line.travel_direction,
            )
        self.parking = ParkingRule(
            [
                Zone(
                    name=zone.name,
                    polygon_xy=np.array([scale.to_work(p) for p in zone.polygon], np.float32),
                    max_dwell_s=zone.max_dwell_s,
                )
                for zone in scene.no_parking_zones
            ]
        )


class DetectorPipeline:
    """Detects red-light and parking violations in one camera's frames, in order."""

    def __init__(
        self,
        scene: SceneConfig,
        *,
        settings: DetectorSettings | None = None,
        evidence: EvidenceSink | None = None,
        observer: PipelineObserver | None = None,
    ) -> None:
        self.scene = scene
        self._settings = settings or DetectorSettings()
        self._evidence = evidence
        self._observer: PipelineObserver = observer or _NullObserver()
        self._decoder: WorkingDecoder | None = None
        self._geometry: _Geometry | None = None
        self._background = SelectiveBackground(fps=scene.fps)
        self._tracker: Tracker | None = None
        self._signal = SignalTimeline(confirm_frames=self._settings.confirm_frames)
        # Red-light events wait for the light to be decided; keep their frames for evidence.
        self._recent: deque[Frame] = deque(maxlen=self._settings.confirm_frames + 2)
        self._min_area_px = 1
        # Consecutive frames each standing track has looked like a ghost.
        self._ghost_frames: dict[int, int] = {}
        # Where the foreground has stayed put over the tracker's stationary window, and the
        # (index, ts_ms) of the frames in that window.
        self._persistent: PersistentForeground | None = None
        self._window: deque[tuple[int, int]] = deque()
        # The no-parking zones grown by a few pixels: vehicles stand there, often on
        # hatching, and a stay is timed from their mask, so a shaking camera's paint is
        # not cut out of it there (SelectiveBackground.apply's ``whole``).
        self._zones_mask: GreyImage | None = None

    @property
    def signal_state(self) -> LightState:
        return self._signal.state

    @property
    def tracks(self) -> list[Track]:
        return self._tracker.tracks if self._tracker else []

    def process(self, frame: Frame) -> list[ViolationEvent]:
        """Run every stage on ``frame``; raises ``CorruptFrameError`` for an unusable frame
        (the pipeline's state is then unchanged, so the caller may skip it and go on)."""
        with self._observer.stage("decode"):
            picture = self._decode(frame)
        geometry = self._geometry
        tracker = self._tracker
        assert geometry is not None and tracker is not None
        self._recent.append(frame)
        if isinstance(picture, WorkingPicture):
            grey = picture.grey
            with self._observer.stage("signal"):
                self._read_signal(picture, geometry, frame.index)
        else:
            grey = picture

        with self._observer.stage("motion"):
            mask = self._background.apply(
                grey, frozen=self._frozen_mask(grey), whole=self._zones_mask
            )
            blobs = find_blobs(mask, min_area_px=self._min_area_px)

        with self._observer.stage("track"):
            tracks = tracker.update(
                blobs, frame=frame.index, ts_ms=frame.ts_ms, fill=partial(_fill, mask)
            )
            tracks = self._release_ghosts(grey, mask, tracks)
            self._adopt_standing(mask, frame)

        with self._observer.stage("rules"):
            hits = self._apply_rules(geometry, tracks, frame)
        return [self._event(hit) for hit in hits]

    def _decode(self, frame: Frame) -> GreyImage | WorkingPicture:
        """The working image, with a colour picture when the camera has a signal to read."""
        decoder = self._decoder or self._new_decoder(source_size(frame))
        picture = (
            decoder.decode(frame)
            if self.scene.traffic_light is None
            else decoder.decode_with_colour(frame)
        )
        if self._decoder is None:
            self._start(decoder)
        return picture

    def _new_decoder(self, source_wh: tuple[int, int]) -> WorkingDecoder:
        settings = self._settings
        reduction = reduction_for(source_wh[0], min_working_width=settings.min_working_width)
        light = self.scene.traffic_light
        if light is None:
            return WorkingDecoder(source_wh=source_wh, reduction=reduction)
        scene_w = self.scene.resolution_wh[0] if self.scene.resolution_wh else source_wh[0]
        _, _, roi_w, roi_h = light.roi
        along = roi_h if light.layout is LampLayout.VERTICAL else roi_w
        colour_reduction = colour_reduction_for(
            along * source_wh[0] / scene_w, reduction=reduction, min_head_px=settings.min_head_px
        )
        return WorkingDecoder(
            source_wh=source_wh, reduction=reduction, colour_reduction=colour_reduction
        )

    def _start(self, decoder: WorkingDecoder) -> None:
        """Size everything for the feed, now that its first frame is known good."""
        settings = self._settings
        work_w, work_h = decoder.working_wh
        scene_w = self.scene.resolution_wh[0] if self.scene.resolution_wh else decoder.source_wh[0]
        self._decoder = decoder
        self._geometry = _Geometry(
            self.scene,
            Scale(factor=work_w / scene_w),
            source_per_scene_px=decoder.source_wh[0] / scene_w,
        )
        self._min_area_px = max(4, round(settings.min_vehicle_area_frac * work_w * work_h))
        tracker_settings = TrackerSettings(
            stationary_tol_px=max(1.5, settings.stationary_tol_frac * work_w),
            moved_px=settings.moved_frac * work_w,
        )
        self._tracker = Tracker(fps=self.scene.fps, settings=tracker_settings)
        if self._geometry.parking.zones:
            zones = np.zeros((work_h, work_w), np.uint8)
            for zone in self._geometry.parking.zones:
                cv2.fillPoly(zones, [np.round(zone.polygon_xy).astype(np.int32)], 255)
            self._zones_mask = np.asarray(cv2.dilate(zones, np.ones((7, 7), np.uint8)), np.uint8)
        self._persistent = PersistentForeground(
            frames=round(self.scene.fps * tracker_settings.stationary_window_s)
        )

    def _read_signal(self, picture: WorkingPicture, geometry: _Geometry, index: int) -> None:
        light = self.scene.traffic_light
        assert light is not None
        head = crop_head(
            picture.colour,
            roi_xywh=light.roi,
            factor=picture.colour_per_source_px * geometry.source_per_scene_px,
        )
        reading = read_lamp_head(head, layout=light.layout)
        change = self._signal.update(frame=index, reading=reading.state)
        if change is not None:
            self._observer.signal_changed(change.state)

    def _release_ghosts(self, grey: GreyImage, mask: GreyImage, tracks: list[Track]) -> list[Track]:
        """Drop standing tracks that hold a ghost, and let the road back into the background.

        A vehicle that stood in the first frames is learnt as background; when it drives off,
        the road it uncovers is foreground, and a track standing on that ghost would freeze
        it there for good (and swallow every vehicle that passes through it).
        """
        assert self._tracker is not None
        height, width = mask.shape
        kept: list[Track] = []
        for track in tracks:
            if not track.stationary:
                self._ghost_frames.pop(track.track_id, None)
                kept.append(track)
                continue
            x, y, w, h = (round(v) for v in track.box)
            box = (max(x, 0), max(y, 0), min(w, width - max(x, 0)), min(h, height - max(y, 0)))
            if not self._background.is_ghost(grey, mask, box):
                self._ghost_frames.pop(track.track_id, None)
                kept.append(track)
                continue
            count = self._ghost_frames.get(track.track_id, 0) + 1
            self._ghost_frames[track.track_id] = count
            if count < GHOST_FRAMES:
                kept.append(track)
                continue
            del self._ghost_frames[track.track_id]
            self._background.relearn(grey, box)
            self._tracker.drop(track.track_id)
        return kept

    def _adopt_standing(self, mask: GreyImage, frame: Frame) -> None:
        """Give a track to each vehicle that stands in a no-parking zone where no track sees
        it standing (only there does a stay's start matter to a rule)."""
        assert self._tracker is not None and self._persistent is not None
        assert self._geometry is not None
        parking = self._geometry.parking
        if not parking.zones:
            return
        self._window.append((frame.index, frame.ts_ms))
        while len(self._window) > self._persistent.frames:
            self._window.popleft()
        standing = self._persistent.update(mask)
        if standing is None:
            return
        since_frame, since_ts_ms = self._window[0]
        self._tracker.adopt_standing(
            find_blobs(standing, min_area_px=self._min_area_px),
            frame=frame.index,
            since_frame=since_frame,
            since_ts_ms=since_ts_ms,
            where=parking.in_zone,
        )

    def _frozen_mask(self, grey: GreyImage) -> GreyImage | None:
        tracks = [t for t in self.tracks if t.established]
        if not tracks:
            return None
        mask = np.zeros_like(grey)
        for track in tracks:
            x, y, w, h = (round(v) for v in track.box)
            cv2.rectangle(mask, (x - 1, y - 1), (x + w + 1, y + h + 1), 255, -1)
        return mask

    def _apply_rules(self, geometry: _Geometry, tracks: list[Track], frame: Frame) -> list[RuleHit]:
        hits: list[RuleHit] = []
        for track in tracks:
            if geometry.red_light is not None:
                geometry.red_light.observe(track, frame=frame.index, ts_ms=frame.ts_ms)
            parked = geometry.parking.observe(track, frame=frame.index, ts_ms=frame.ts_ms)
            if parked is not None:
                hits.append(parked)
        if geometry.red_light is not None:
            hits.extend(geometry.red_light.judge(self._signal))
        alive = {t.track_id for t in tracks}
        geometry.parking.retain(alive)
        if geometry.red_light is not None:
            geometry.red_light.retain(alive)
        return hits

    def _event(self, hit: RuleHit) -> ViolationEvent:
        assert self._geometry is not None
        event = ViolationEvent.create(
            violation_type=hit.violation_type,
            camera_id=self.scene.camera_id,
            city=self.scene.city,
            frame=hit.frame,
            ts_ms=hit.ts_ms,
            track_id=hit.track_id,
            bbox_xywh=self._geometry.scale.box_to_scene(hit.box_xywh),
            confidence=hit.confidence,
        )
        frame = next((f for f in self._recent if f.index == hit.frame), None)
        if self._evidence is None or frame is None:
            return event
        snapshot = self._evidence.save(event=event, frame=frame, scene=self.scene)
        return event.model_copy(update={"snapshot": snapshot})


def _fill(mask: GreyImage, box_xywh: BoxXYWH) -> float:
    """The foreground fraction of the mask inside the box (clipped to the frame).

    >>> m = np.zeros((10, 10), np.uint8); m[0:5, 0:10] = 255
    >>> _fill(m, (0.0, 0.0, 10.0, 10.0)), _fill(m, (0.0, 8.0, 4.0, 4.0))
    (0.5, 0.0)
    """
    height, width = int(mask.shape[0]), int(mask.shape[1])
    x0, y0 = max(round(box_xywh[0]), 0), max(round(box_xywh[1]), 0)
    x1 = min(round(box_xywh[0] + box_xywh[2]), width)
    y1 = min(round(box_xywh[1] + box_xywh[3]), height)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    area = (x1 - x0) * (y1 - y0)
    return float(np.count_nonzero(mask[y0:y1, x0:x1])) / area
