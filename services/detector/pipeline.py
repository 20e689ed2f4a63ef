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

from services.common.arrays import GreyImage
from services.common.boxes import BoxXYWH
from services.common.config.scene import LampLayout, SceneConfig
from services.common.events import ViolationEvent
from services.common.frames import Frame
from services.detector.background import SelectiveBackground
from services.detector.blobs import find_blobs
from services.detector.decode import (
    WorkingDecoder,
    WorkingPicture,
    colour_reduction_for,
    reduction_for,
    source_size,
)
from services.detector.evidence import EvidenceSink
from services.detector.geometry import Scale, pixel_box
from services.detector.result import FrameResult, SeenTrack
from services.detector.rules import ParkingRule, RedLightRule, RuleHit, Zone
from services.detector.signal import (
    LightState,
    SignalTimeline,
    crop_head,
    read_lamp_head,
)
from services.detector.tracker import (
    LeftPlace,
    StandingVehicles,
    Tracker,
    TrackerSettings,
    TrackView,
)


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


class _Feed:
    """Everything sized from the feed's first good frame: the decoder, the scene in working
    pixels, the tracker, and where vehicles may stand unseen."""

    def __init__(
        self,
        scene: SceneConfig,
        settings: DetectorSettings,
        decoder: WorkingDecoder,
        *,
        first: Frame,
    ) -> None:
        work_w, work_h = decoder.working_wh
        # Events number tracks from here up: see _track_base_for.
        self.track_base = _track_base_for(first.ts_ms)
        # Kept for the evidence of a vehicle that stood in a zone from the first frame, which
        # is found only when it leaves.
        self.first = first
        scene_w = scene.resolution_wh[0] if scene.resolution_wh else decoder.source_wh[0]
        self.decoder = decoder
        self.geometry = _Geometry(
            scene,
            Scale(factor=work_w / scene_w),
            source_per_scene_px=decoder.source_wh[0] / scene_w,
        )
        self.min_area_px = max(4, round(settings.min_vehicle_area_frac * work_w * work_h))
        tracker_settings = TrackerSettings(
            stationary_tol_px=max(1.5, settings.stationary_tol_frac * work_w),
            moved_px=settings.moved_frac * work_w,
        )
        parking = self.geometry.parking
        self.tracker = Tracker(
            fps=scene.fps,
            settings=tracker_settings,
            frame_wh=decoder.working_wh,
            parking_zone=parking.in_zone if parking.zones else None,
        )
        # Only in a no-parking zone does a stay's start matter to a rule, so only there are
        # vehicles looked for in the persistent foreground; and there, vehicles stand, often
        # on hatching, and a stay is timed from their mask, so a shaking camera's paint is
        # not cut out of the zones grown by a few pixels (SelectiveBackground.apply's
        # ``whole``).
        self.standing: StandingVehicles | None = None
        self.zones_mask: GreyImage | None = None
        if parking.zones:
            self.standing = StandingVehicles(
                window_frames=round(scene.fps * tracker_settings.stationary_window_s),
                min_area_px=self.min_area_px,
                where=parking.in_zone,
            )
            zones = np.zeros((work_h, work_w), np.uint8)
            for zone in parking.zones:
                cv2.fillPoly(zones, [np.round(zone.polygon_xy).astype(np.int32)], 255)
            self.zones_mask = np.asarray(cv2.dilate(zones, np.ones((7, 7), np.uint8)), np.uint8)


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
        # Built on the first frame that decodes.
        self._feed: _Feed | None = None
        self._background = SelectiveBackground(fps=scene.fps)
        self._signal = SignalTimeline(confirm_frames=self._settings.confirm_frames)
        # Red-light events wait for the light to be decided; keep their frames for evidence.
        self._recent: deque[Frame] = deque(maxlen=self._settings.confirm_frames + 2)

    @property
    def signal_state(self) -> LightState:
        return self._signal.state

    @property
    def tracks(self) -> list[TrackView]:
        """Every live track, as of the last frame processed."""
        return self._feed.tracker.tracks if self._feed else []

    def process(self, frame: Frame) -> list[ViolationEvent]:
        """Run every stage on ``frame``; raises ``CorruptFrameError`` for an unusable frame
        (the pipeline's state is then unchanged, so the caller may skip it and go on)."""
        return list(self.process_frame(frame).events)

    def process_frame(self, frame: Frame) -> FrameResult:
        """:meth:`process`, returning what the detector saw as well as the events."""
        with self._observer.stage("decode"):
            decoder = self._feed.decoder if self._feed else self._decoder_for(frame)
            # A colour picture too when the camera has a signal to read.
            picture = (
                decoder.decode(frame)
                if self.scene.traffic_light is None
                else decoder.decode_with_colour(frame)
            )
        feed = self._feed = self._feed or _Feed(self.scene, self._settings, decoder, first=frame)
        geometry, tracker = feed.geometry, feed.tracker
        self._recent.append(frame)
        if isinstance(picture, WorkingPicture):
            grey = picture.grey
            with self._observer.stage("signal"):
                self._read_signal(picture, geometry, frame.index)
        else:
            grey = picture

        with self._observer.stage("motion"):
            mask = self._background.apply(
                grey, frozen=self._frozen_mask(grey, tracker), whole=feed.zones_mask
            )
            blobs = find_blobs(mask, min_area_px=feed.min_area_px)

        with self._observer.stage("track"):
            tracker.update(blobs, frame=frame.index, ts_ms=frame.ts_ms, fill=partial(_fill, mask))
            left_places = self._release_ghosts(grey, mask, tracker)
            tracks = tracker.tracks
            if feed.standing is not None:
                tracker.adopt_standing(
                    feed.standing.update(mask, frame=frame.index, ts_ms=frame.ts_ms),
                    frame=frame.index,
                )

        with self._observer.stage("rules"):
            hits = self._apply_rules(feed, tracks, left_places, frame)
        return self._result(
            index=frame.index,
            ts_ms=frame.ts_ms,
            tracks=tracks,
            events=tuple(
                self._event(hit, place, feed, decided_ts_ms=frame.ts_ms)
                for hit, place in _places(hits)
            ),
        )

    def held(self, *, index: int, ts_ms: int, dropped: str) -> FrameResult:
        """The state the detector holds at a frame it could not use (for a trace)."""
        return self._result(index=index, ts_ms=ts_ms, tracks=self.tracks, dropped=dropped)

    def _result(
        self,
        *,
        index: int,
        ts_ms: int,
        tracks: list[TrackView],
        events: tuple[ViolationEvent, ...] = (),
        dropped: str | None = None,
    ) -> FrameResult:
        feed = self._feed
        # Numbered as the events number them (see _track_base_for), so a trace, an annotated
        # video and the evidence name a vehicle by the id its event carries.
        seen = (
            tuple(
                SeenTrack(
                    track_id=feed.track_base + t.track_id,
                    bbox_xywh=feed.geometry.scale.box_to_scene(t.box_xywh),
                    stationary=t.stationary,
                    established=t.established,
                    coasting=t.coasting,
                )
                for t in tracks
            )
            if feed is not None
            else ()
        )
        return FrameResult(
            frame=index,
            ts_ms=ts_ms,
            signal=self._signal.state,
            tracks=seen,
            events=events,
            dropped=dropped,
        )

    def _decoder_for(self, frame: Frame) -> WorkingDecoder:
        source_wh = source_size(frame)
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

    def _release_ghosts(
        self, grey: GreyImage, mask: GreyImage, tracker: Tracker
    ) -> list[LeftPlace]:
        """Drop standing tracks that hold a ghost (see ``tracker.ghosts``), and let the road
        they stood on back into the background; returns the places left by vehicles that
        had stood there from the first frames."""
        height, width = mask.shape
        image_wh = (width, height)
        released = tracker.release_ghosts(
            looks_like_ghost=lambda box: self._background.is_ghost(
                grey, mask, pixel_box(box, image_wh=image_wh)
            )
        )
        for box in released.relearn_xywh:
            self._background.relearn(grey, pixel_box(box, image_wh=image_wh))
        return released.left_places

    @staticmethod
    def _frozen_mask(grey: GreyImage, tracker: Tracker) -> GreyImage | None:
        tracks = [t for t in tracker.tracks if t.established]
        if not tracks:
            return None
        mask = np.zeros_like(grey)
        for track in tracks:
            x, y, w, h = (round(v) for v in track.box_xywh)
            cv2.rectangle(mask, (x - 1, y - 1), (x + w + 1, y + h + 1), 255, -1)
        return mask

    def _apply_rules(
        self, feed: _Feed, tracks: list[TrackView], left_places: list[LeftPlace], frame: Frame
    ) -> list[RuleHit]:
        geometry = feed.geometry
        hits: list[RuleHit] = []
        vehicle_width_px = feed.tracker.vehicle_width_px
        for track in tracks:
            if geometry.red_light is not None:
                geometry.red_light.observe(
                    track, frame=frame.index, ts_ms=frame.ts_ms, vehicle_width_px=vehicle_width_px
                )
            parked = geometry.parking.observe(track, frame=frame.index, ts_ms=frame.ts_ms)
            if parked is not None:
                hits.append(parked)
        if geometry.red_light is not None:
            hits.extend(geometry.red_light.judge(self._signal))
        for place in left_places:
            stood = geometry.parking.stood_from_start(
                place, first=(feed.first.index, feed.first.ts_ms), now=(frame.index, frame.ts_ms)
            )
            if stood is not None:
                hits.append(stood)
        alive = {t.track_id for t in tracks}
        geometry.parking.retain(alive)
        if geometry.red_light is not None:
            geometry.red_light.retain(alive)
        return hits

    def _event(
        self, hit: RuleHit, place: int, feed: _Feed, *, decided_ts_ms: int
    ) -> ViolationEvent:
        event = ViolationEvent.create(
            id_number=place,
            violation_type=hit.violation_type,
            camera_id=self.scene.camera_id,
            city=self.scene.city,
            frame=hit.frame,
            ts_ms=hit.ts_ms,
            track_id=feed.track_base + hit.track_id,
            bbox_xywh=feed.geometry.scale.box_to_scene(hit.box_xywh),
            confidence=hit.confidence,
            tracker_epoch_ms=feed.first.ts_ms,
            decided_ts_ms=decided_ts_ms,
            parked_since_ts_ms=hit.parked_since_ts_ms,
        )
        frame = next((f for f in (feed.first, *self._recent) if f.index == hit.seen_frame), None)
        if self._evidence is None or frame is None:
            return event
        snapshot = self._evidence.save(event=event, frame=frame, scene=self.scene)
        return event.model_copy(update={"snapshot": snapshot})


def _track_base_for(first_ts_ms: int) -> int:
    """Where a pipeline's event track ids start: its first frame's second (mod 10^6) x 1000.

    The dispatcher groups repeats by camera, type and track id. A detector taking a camera
    over numbers its tracks from 1 again, and without a base its track 3 would be grouped
    with the previous owner's track 3, a different vehicle. A replay of the same footage
    starts at the same second, so it numbers the same.

    >>> _track_base_for(1_700_000_012_345)
    12000
    """
    return (first_ts_ms // 1000) % 1_000_000 * 1000


def _places(hits: list[RuleHit]) -> list[tuple[RuleHit, int]]:
    """Each hit with its place among the hits of its type and frame, left to right.

    The place, not the track id, goes into the ``violation_id``: a detector that takes the
    camera over and replays the frame finds the same vehicles in the same order, but tracks
    them under its own ids. Almost every place is 0; two vehicles of one frame are 0 and 1.
    """
    ordered = sorted(hits, key=lambda h: (h.violation_type.value, h.frame, h.box_xywh[0]))
    places: dict[int, int] = {}
    seen: dict[tuple[str, int], int] = {}
    for hit in ordered:
        key = (hit.violation_type.value, hit.frame)
        places[id(hit)] = seen.get(key, 0)
        seen[key] = places[id(hit)] + 1
    return [(hit, places[id(hit)]) for hit in hits]


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
