"""Road layout derived from a scene file: lanes, the stop line, kerb slots.

The scene file is the single source of geometry, so the simulator draws exactly what the
scene says. Roads are axis-aligned: an intersection approach runs along the stop line's
``travel_direction``, and a street runs left-right beside the kerb strip that its
no-parking zones lie on. Everything here is in native pixels (``NATIVE_WH``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from services.common.arrays import PointXY
from services.common.config.catalogue import CameraKind
from services.common.config.loader import ConfigError
from services.common.config.scene import NoParkingZone, SceneConfig
from simulators.config import CameraTraffic

NATIVE_WH = (1280, 720)
# How far along the lane a vehicle travels while it pulls into or out of the kerb strip.
MERGE_PX = 120.0
MIN_LANE_WIDTH_PX = 64.0
MIN_APPROACH_PX = 300.0

DirectionXY = tuple[int, int]
_AXIS_DIRECTIONS: tuple[DirectionXY, ...] = ((0, -1), (0, 1), (-1, 0), (1, 0))


@dataclass(frozen=True, slots=True)
class Lane:
    """A straight lane; ``s`` is the distance travelled from the entry edge of the frame."""

    origin_xy: PointXY
    direction_xy: DirectionXY
    width: float
    exit_s: float
    stop_s: float | None = None
    kerb_offset_xy: PointXY = (0.0, 0.0)

    def point(self, s: float, *, kerb_p: float = 0.0) -> PointXY:
        """The image point ``s`` along the centreline, shifted ``kerb_p`` of the way to the kerb."""
        dx, dy = self.direction_xy
        kx, ky = self.kerb_offset_xy
        return (self.origin_xy[0] + dx * s + kx * kerb_p, self.origin_xy[1] + dy * s + ky * kerb_p)

    def s_of(self, point_xy: PointXY) -> float:
        dx, dy = self.direction_xy
        return (point_xy[0] - self.origin_xy[0]) * dx + (point_xy[1] - self.origin_xy[1]) * dy

    @property
    def vertical(self) -> bool:
        return self.direction_xy[0] == 0


@dataclass(frozen=True, slots=True)
class Slot:
    """A stretch of kerb where one vehicle stops: a no-parking zone or a legal bay."""

    x0: float
    x1: float
    zone: NoParkingZone | None

    @property
    def length(self) -> float:
        return self.x1 - self.x0


@dataclass(frozen=True, slots=True)
class IntersectionLayout:
    approach: tuple[Lane, ...]
    opposite: tuple[Lane, ...]
    line_xy: tuple[PointXY, PointXY]

    @property
    def lanes(self) -> tuple[Lane, ...]:
        return self.approach + self.opposite


@dataclass(frozen=True, slots=True)
class StreetLayout:
    near: Lane
    far: Lane
    kerb_y: tuple[float, float]
    slots: tuple[Slot, ...]

    @property
    def lanes(self) -> tuple[Lane, ...]:
        return (self.near, self.far)


Layout = IntersectionLayout | StreetLayout


def build_layout(scene: SceneConfig, kind: CameraKind, traffic: CameraTraffic) -> Layout:
    """Derive the lanes and slots a camera's scene implies, or raise ``ConfigError``."""
    source = f"scene {scene.camera_id}"
    if scene.resolution_wh not in (None, NATIVE_WH):
        raise ConfigError(source, [f"resolution_wh: simulated scenes are drawn at {NATIVE_WH}"])
    if kind is CameraKind.INTERSECTION:
        return _intersection(scene, traffic, source)
    return _street(scene, traffic, source)


def _intersection(scene: SceneConfig, traffic: CameraTraffic, source: str) -> IntersectionLayout:
    if scene.stop_line is None or scene.traffic_light is None:
        raise ConfigError(source, ["traffic_light: an intersection camera needs a signal"])
    direction = _axis_direction(scene.stop_line.travel_direction)
    if direction is None:
        raise ConfigError(
            source, ["stop_line.travel_direction: must be one of [0,-1], [0,1], [-1,0], [1,0]"]
        )
    (ax, ay), (bx, by) = scene.stop_line.points
    vertical = direction[0] == 0
    if (ay != by) if vertical else (ax != bx):
        raise ConfigError(source, ["stop_line.points: must be perpendicular to travel_direction"])
    width, height = NATIVE_WH
    across0, across1 = sorted((ax, bx) if vertical else (ay, by))
    lane_w = (across1 - across0) / traffic.approach_lanes
    if lane_w < MIN_LANE_WIDTH_PX:
        raise ConfigError(
            source,
            [
                f"stop_line.points: {traffic.approach_lanes} lanes need "
                f"{MIN_LANE_WIDTH_PX:.0f} px each"
            ],
        )
    extent = height if vertical else width
    # Vehicles enter at the frame edge they drive away from.
    entry = extent if sum(direction) < 0 else 0.0
    line_along = ay if vertical else ax
    if abs(line_along - entry) < MIN_APPROACH_PX:
        raise ConfigError(
            source, [f"stop_line.points: needs {MIN_APPROACH_PX:.0f} px of approach in view"]
        )
    # Traffic keeps right, so oncoming lanes lie on the driver's left.
    left = (direction[1], -direction[0])
    left_sign = left[0] if vertical else left[1]
    near_edge = across0 if left_sign < 0 else across1

    def lane(centre: float, heading: DirectionXY) -> Lane:
        start = extent if sum(heading) < 0 else 0.0
        origin = (centre, start) if vertical else (start, centre)
        return Lane(origin_xy=origin, direction_xy=heading, width=lane_w, exit_s=float(extent))

    approach = tuple(
        _with_stop(lane(across0 + (i + 0.5) * lane_w, direction), abs(line_along - entry))
        for i in range(traffic.approach_lanes)
    )
    reverse = (-direction[0], -direction[1])
    opposite = tuple(
        lane(near_edge + left_sign * (j + 0.5) * lane_w, reverse)
        for j in range(traffic.opposite_lanes)
    )
    return IntersectionLayout(approach=approach, opposite=opposite, line_xy=((ax, ay), (bx, by)))


def _with_stop(lane: Lane, stop_s: float) -> Lane:
    return Lane(
        origin_xy=lane.origin_xy,
        direction_xy=lane.direction_xy,
        width=lane.width,
        exit_s=lane.exit_s,
        stop_s=stop_s,
    )


def _axis_direction(vector: PointXY) -> DirectionXY | None:
    for candidate in _AXIS_DIRECTIONS:
        if vector[0] * candidate[0] + vector[1] * candidate[1] > 0 and (
            vector[0] * candidate[1] - vector[1] * candidate[0] == 0
        ):
            return candidate
    return None


def _street(scene: SceneConfig, traffic: CameraTraffic, source: str) -> StreetLayout:
    if scene.traffic_light is not None:
        raise ConfigError(source, ["traffic_light: a street camera has no signal"])
    if not scene.no_parking_zones:
        raise ConfigError(source, ["no_parking_zones: a street camera needs at least one zone"])
    problems: list[str] = []
    slots: list[Slot] = []
    kerb_y: tuple[float, float] | None = None
    for i, zone in enumerate(scene.no_parking_zones):
        xs = sorted({p[0] for p in zone.polygon})
        ys = sorted({p[1] for p in zone.polygon})
        if len(zone.polygon) != 4 or len(xs) != 2 or len(ys) != 2:
            problems.append(f"no_parking_zones[{i}].polygon: must be an axis-aligned rectangle")
            continue
        if kerb_y not in (None, (ys[0], ys[1])):
            problems.append(f"no_parking_zones[{i}].polygon: all zones must share one kerb strip")
        kerb_y = (ys[0], ys[1])
        slots.append(Slot(x0=xs[0], x1=xs[1], zone=zone))
    slots += [Slot(x0=x0, x1=x1, zone=None) for x0, x1 in traffic.bays]
    slots.sort(key=lambda slot: slot.x0)
    width, height = NATIVE_WH
    for left, right in itertools.pairwise(slots):
        if right.x0 - left.x1 < MERGE_PX:
            problems.append(
                f"bays: kerb slots at x={left.x0:.0f} and x={right.x0:.0f} need "
                f"{MERGE_PX:.0f} px between them to pull in and out"
            )
    if any(slot.x1 > width or slot.length < 120 for slot in slots):
        problems.append(f"bays: every bay and zone must be >= 120 px long and within {width} px")
    if problems or kerb_y is None:
        raise ConfigError(source, problems)
    y0, y1 = kerb_y
    lane_w = y1 - y0
    if lane_w < MIN_LANE_WIDTH_PX:
        problems.append(f"no_parking_zones: the kerb strip must be >= {MIN_LANE_WIDTH_PX:.0f} px")
    if not 2 * lane_w <= y0 or not y1 + 2 * lane_w <= height:
        problems.append("no_parking_zones: the kerb strip must leave room for two lanes")
    if problems:
        raise ConfigError(source, problems)
    # Traffic keeps right: a kerb below the road carries eastbound traffic, one above westbound.
    kerb_below = (y0 + y1) / 2 > height / 2
    side = -1.0 if kerb_below else 1.0
    near_y = (y0 if kerb_below else y1) + side * lane_w / 2
    far_y = near_y + side * lane_w
    east: DirectionXY = (1, 0)
    west: DirectionXY = (-1, 0)
    near = Lane(
        origin_xy=(0.0 if kerb_below else float(width), near_y),
        direction_xy=east if kerb_below else west,
        width=lane_w,
        exit_s=float(width),
        kerb_offset_xy=(0.0, -side * lane_w),
    )
    far = Lane(
        origin_xy=(float(width) if kerb_below else 0.0, far_y),
        direction_xy=west if kerb_below else east,
        width=lane_w,
        exit_s=float(width),
    )
    return StreetLayout(near=near, far=far, kerb_y=kerb_y, slots=tuple(slots))
