"""A simulated camera: timestamped frames at its fps, ground truth, and the sinks they go to.

>>> camera = simulate_camera("wuzhen-cam-01", seconds=2, resolution_wh=(640, 360))
>>> first = next(camera.frames())
>>> first.bgr.shape, first.ts_ms
((360, 640, 3), 1700000000000)

Frame ``i`` is captured at ``start_ts_ms + round(i * 1000 / fps)``. With ``faults`` on, a few
frames are dropped (``frames()`` skips the index) or corrupt (undecodable JPEG bytes, or a
torn picture in ``frames()``); the per-frame truth marks both.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from services.common.bus import Bus
from services.common.config.catalogue import catalogue_path as resolve_catalogue_path
from services.common.config.catalogue import load_catalogue, scene_path
from services.common.config.loader import load_model
from services.common.config.scene import SceneConfig
from services.common.frames import FRAMES_TOPIC, BGRImage, Frame
from simulators.config import CameraTraffic, load_simulator_config
from simulators.layout import NATIVE_WH, Layout, build_layout
from simulators.render import HEAVY_JPEG_QUALITY, VARIANTS, Renderer
from simulators.traffic import Role, Trajectory, simulate_traffic
from simulators.truth import (
    FrameTruth,
    Truth,
    TruthBox,
    TruthViolation,
    find_violations,
    write_truth,
)

__all__ = [
    "VARIANTS",
    "SimulatedCamera",
    "UnknownCameraError",
    "paced",
    "publish_frames",
    "simulate_camera",
    "write_recording",
]

DEFAULT_START_TS_MS = 1_700_000_000_000
DEFAULT_FAULT_RATE = 0.02


class UnknownCameraError(ValueError):
    """A camera id that the catalogue does not list."""


@dataclass(frozen=True, slots=True)
class CameraSetup:
    """A catalogued camera's native scene, the layout it implies and its traffic settings."""

    scene: SceneConfig
    layout: Layout
    traffic: CameraTraffic


def load_camera_setup(
    camera_id: str,
    *,
    catalogue_path: Path | str | None = None,
    simulator_config_path: Path | str | None = None,
) -> CameraSetup:
    """Load and check everything a camera needs; raises ``UnknownCameraError``/``ConfigError``."""
    catalogue = load_catalogue(catalogue_path)
    found = catalogue.camera(camera_id)
    if found is None:
        raise UnknownCameraError(
            f"unknown camera {camera_id!r}; known: {', '.join(catalogue.camera_ids())}"
        )
    _, camera = found
    scene = load_model(SceneConfig, scene_path(resolve_catalogue_path(catalogue_path), camera))
    traffic = load_simulator_config(simulator_config_path).traffic(camera_id)
    return CameraSetup(
        scene=scene, layout=build_layout(scene, camera.kind, traffic), traffic=traffic
    )


def simulate_camera(
    camera_id: str,
    *,
    seconds: float,
    seed: int = 0,
    variant: str = "day",
    resolution_wh: tuple[int, int] = NATIVE_WH,
    start_ts_ms: int = DEFAULT_START_TS_MS,
    faults: bool = False,
    fault_rate: float = DEFAULT_FAULT_RATE,
    catalogue_path: Path | str | None = None,
    simulator_config_path: Path | str | None = None,
) -> SimulatedCamera:
    """Simulate ``seconds`` of a catalogued camera; the same arguments give the same frames.

    The seed picks the traffic; ``variant`` (one of ``VARIANTS``) only changes the look, so
    the truth is the same in every variant of one seed and resolution.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
    if seconds <= 0 or min(resolution_wh) < 16:
        raise ValueError("seconds must be > 0 and resolution_wh at least 16x16")
    setup = load_camera_setup(
        camera_id, catalogue_path=catalogue_path, simulator_config_path=simulator_config_path
    )
    fps = setup.scene.fps
    trajectory = simulate_traffic(
        setup.layout,
        setup.traffic,
        fps=fps,
        n_frames=max(round(seconds * fps), 1),
        seed_key=f"{camera_id}:{seed}",
    )
    renderer = Renderer(
        setup.scene, setup.layout, resolution_wh=resolution_wh, variant=variant, seed=seed
    )
    return SimulatedCamera(
        renderer=renderer,
        trajectory=trajectory,
        start_ts_ms=start_ts_ms,
        fault_rate=fault_rate if faults else 0.0,
        seed=seed,
    )


def scale_scene(scene: SceneConfig, resolution_wh: tuple[int, int]) -> SceneConfig:
    """The native scene with its geometry scaled to ``resolution_wh``."""
    sx, sy = resolution_wh[0] / NATIVE_WH[0], resolution_wh[1] / NATIVE_WH[1]
    data = scene.model_dump(mode="json")
    data["resolution_wh"] = list(resolution_wh)
    if scene.traffic_light is not None:
        x, y, w, h = scene.traffic_light.roi
        data["traffic_light"]["roi"] = [round(x * sx), round(y * sy), round(w * sx), round(h * sy)]
    if scene.stop_line is not None:
        data["stop_line"]["points"] = [
            [round(px * sx, 2), round(py * sy, 2)] for px, py in scene.stop_line.points
        ]
    for zone in data["no_parking_zones"]:
        zone["polygon"] = [[round(px * sx, 2), round(py * sy, 2)] for px, py in zone["polygon"]]
    return SceneConfig.model_validate(data)


class SimulatedCamera:
    """One camera's simulated footage: frames on demand, truth computed up front."""

    def __init__(
        self,
        *,
        renderer: Renderer,
        trajectory: Trajectory,
        start_ts_ms: int,
        fault_rate: float,
        seed: int,
    ) -> None:
        self._renderer = renderer
        self._trajectory = trajectory
        self.scene: SceneConfig = scale_scene(renderer.scene, renderer.resolution_wh)
        self.camera_id = self.scene.camera_id
        self.fps = self.scene.fps
        self.variant = renderer.variant
        self.resolution_wh = renderer.resolution_wh
        self.n_frames = len(trajectory.frames)
        self._start_ts_ms = start_ts_ms
        faults = random.Random(f"faults:{self.camera_id}:{seed}")
        self.frame_truth: list[FrameTruth] = []
        for index, placed in enumerate(trajectory.frames):
            roll = faults.random()
            self.frame_truth.append(
                FrameTruth(
                    frame=index,
                    ts_ms=self.ts_ms(index),
                    boxes=tuple(self._truth_box(p.vehicle_id, p.box_xyxy) for p in placed),
                    light=trajectory.phases[index].value if trajectory.phases else None,
                    # Frame 0 is always whole, so a reader can learn the size from it.
                    dropped=index > 0 and roll < fault_rate / 2,
                    corrupt=index > 0 and fault_rate / 2 <= roll < fault_rate,
                )
            )
        self.truth: list[TruthViolation] = find_violations(self.scene, self.frame_truth)

    def ts_ms(self, index: int) -> int:
        return self._start_ts_ms + round(index * 1000 / self.fps)

    def _truth_box(self, vehicle_id: int, box_xyxy: tuple[float, float, float, float]) -> TruthBox:
        # The same rounding as the renderer's, so the truth box is exactly the drawn one.
        canvas = self._renderer.canvas
        width, height = self.resolution_wh
        x0, y0 = canvas.pt(box_xyxy[0], box_xyxy[1])
        x1, y1 = canvas.pt(box_xyxy[2], box_xyxy[3])
        x0, x1 = max(x0, 0), min(x1, width)
        y0, y1 = max(y0, 0), min(y1, height)
        return TruthBox(vehicle_id=vehicle_id, bbox_xywh=(x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)))

    @property
    def roles(self) -> dict[int, Role]:
        """Why each vehicle was put in the scene (for tests and evaluation reports)."""
        return self._trajectory.roles

    def vehicle_boxes(self, frame_index: int) -> list[TruthBox]:
        """The boxes of every vehicle visible in frame ``frame_index`` (clipped to the frame)."""
        return [b for b in self.frame_truth[frame_index].boxes if b.bbox_xywh[2] and b.bbox_xywh[3]]

    def light_state(self, frame_index: int) -> str | None:
        """``"red"``, ``"amber"`` or ``"green"`` in that frame, or None without a signal."""
        return self.frame_truth[frame_index].light

    def _picture(self, frame_index: int) -> BGRImage:
        phases = self._trajectory.phases
        return self._renderer.render(
            frame_index,
            self._trajectory.frames[frame_index],
            phases[frame_index] if phases else None,
        )

    def render(self, frame_index: int) -> BGRImage:
        """The picture of frame ``frame_index`` as ``frames()`` shows it, faults aside."""
        img = self._picture(frame_index)
        if self.variant == "jpeg":
            return _decode(_encode(img, HEAVY_JPEG_QUALITY))
        return img

    def _shown(self, truth: FrameTruth) -> BGRImage:
        img = self.render(truth.frame)
        if truth.corrupt:
            # A decoder that lost sync paints the rest of the picture flat green.
            img[img.shape[0] * 2 // 5 :] = (0, 135, 0)
        return img

    def frames(self) -> Iterator[Frame]:
        """Every frame with ``bgr`` set; dropped frames are skipped, corrupt ones torn."""
        for truth in self.frame_truth:
            if not truth.dropped:
                yield Frame(
                    camera_id=self.camera_id,
                    index=truth.frame,
                    ts_ms=truth.ts_ms,
                    bgr=self._shown(truth),
                )

    def jpeg_frames(self, quality: int = 85) -> Iterator[Frame]:
        """Every frame with ``jpeg`` set; corrupt frames carry bytes no decoder accepts."""
        if self.variant == "jpeg":
            quality = min(quality, HEAVY_JPEG_QUALITY)
        for truth in self.frame_truth:
            if truth.dropped:
                continue
            data = (
                _garbage(truth.frame)
                if truth.corrupt
                else _encode(self._picture(truth.frame), quality)
            )
            yield Frame(camera_id=self.camera_id, index=truth.frame, ts_ms=truth.ts_ms, jpeg=data)

    def write_scene(self, path: Path) -> None:
        """Dump the scaled scene as a scene file that validates with ``SceneConfig``."""
        data = self.scene.model_dump(mode="json", exclude_none=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _encode(img: BGRImage, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buffer)


def _decode(data: bytes) -> BGRImage:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError("JPEG decoding failed")
    return np.asarray(img, dtype=np.uint8)


def _garbage(frame_index: int) -> bytes:
    """A JPEG start marker followed by noise: what a torn network packet looks like."""
    return b"\xff\xd8" + random.Random(frame_index).randbytes(2048)


def paced(frames: Iterable[Frame], *, realtime: bool) -> Iterator[Frame]:
    """Yield ``frames`` as fast as possible, or at their capture times (``realtime``)."""
    start_wall: float | None = None
    start_ts = 0
    for frame in frames:
        if realtime:
            if start_wall is None:
                start_wall, start_ts = time.monotonic(), frame.ts_ms
            delay = start_wall + (frame.ts_ms - start_ts) / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield frame


def write_recording(
    camera: SimulatedCamera, out_dir: Path, *, on_frame: Callable[[], None] | None = None
) -> None:
    """Write ``out_dir/video.avi`` (MJPG), ``truth.jsonl`` and ``scene.yaml``.

    The video has one picture per frame index, so its n-th frame is truth frame n: a dropped
    frame repeats the previous picture, as a recorder that missed one does.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = out_dir / "video.avi"
    writer = cv2.VideoWriter(
        str(video_path), cv2.VideoWriter.fourcc(*"MJPG"), camera.fps, camera.resolution_wh
    )
    if not writer.isOpened():
        raise OSError(f"cannot open {video_path} for writing")
    # Quality 85 looks like a camera's own stream and keeps a minute of 720p near 40 MB.
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 85)
    try:
        previous: BGRImage | None = None
        for truth in camera.frame_truth:
            img = previous if truth.dropped and previous is not None else camera._shown(truth)
            writer.write(img)
            previous = img
            if on_frame is not None:
                on_frame()
    finally:
        writer.release()
    write_truth(out_dir / "truth.jsonl", Truth(violations=camera.truth, frames=camera.frame_truth))
    camera.write_scene(out_dir / "scene.yaml")


def publish_frames(
    bus: Bus,
    cameras: Sequence[SimulatedCamera],
    *,
    realtime: bool,
    quality: int = 85,
    on_frame: Callable[[Frame], None] | None = None,
) -> int:
    """Publish every camera's JPEG frames to the ``frames`` topic, in capture-time order.

    Each message is keyed by camera id, so one camera's frames stay in order on one partition.
    Returns the number of frames published.
    """
    bus.ensure_topics([FRAMES_TOPIC])
    streams = [camera.jpeg_frames(quality) for camera in cameras]
    merged = heapq.merge(*streams, key=lambda frame: frame.ts_ms)
    count = 0
    for frame in paced(merged, realtime=realtime):
        assert frame.jpeg is not None
        bus.publish(
            FRAMES_TOPIC.name, frame.jpeg, key=frame.camera_id.encode(), headers=frame.headers()
        )
        count += 1
        if on_frame is not None:
            on_frame(frame)
    bus.flush()
    return count
