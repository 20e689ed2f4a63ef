"""One camera's geometry: the scene file of ``shared/contracts.md``.

Pixel coordinates are in the source video's resolution, origin at the top left.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from services.common.arrays import PointXY
from services.common.config.base import StrictModel
from services.common.events import CAMERA_ID_PATTERN

# Far beyond any camera's frame (16K is 15,360 pixels wide), and far below where float
# arithmetic on coordinates loses its precision.
MAX_PIXEL = 100_000

PositiveInt = Annotated[int, Field(gt=0)]
# A pixel coordinate: finite (no .nan, no .inf) and within MAX_PIXEL of the origin.
Pixel = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_PIXEL, le=MAX_PIXEL)]
PixelXY = tuple[Pixel, Pixel]
PixelSize = Annotated[int, Field(gt=0, le=MAX_PIXEL)]
PixelOffset = Annotated[int, Field(le=MAX_PIXEL)]


class LampLayout(StrEnum):
    """How a 3-lamp head is stacked: red first (top or left), green last."""

    VERTICAL = "vertical"
    HORIZONTAL = "horizontal"


class TrafficLight(StrictModel):
    roi: tuple[PixelOffset, PixelOffset, PixelSize, PixelSize] = Field(
        description="x, y, w, h around a 3-lamp head"
    )
    layout: LampLayout = Field(
        default=LampLayout.VERTICAL,
        description="vertical: red top, amber middle, green bottom; "
        "horizontal: red left, amber middle, green right",
    )

    @model_validator(mode="after")
    def verify_roi_origin(self) -> Self:
        if self.roi[0] < 0 or self.roi[1] < 0:
            raise ValueError("roi x and y must be >= 0")
        return self


class StopLine(StrictModel):
    points: tuple[PixelXY, PixelXY] = Field(description="the two ends of the stop line")
    travel_direction: PixelXY = Field(description="the direction of lawful travel across the line")

    @field_validator("points")
    @classmethod
    def verify_distinct_points(cls, points: tuple[PointXY, PointXY]) -> tuple[PointXY, PointXY]:
        if points[0] == points[1]:
            raise ValueError("must be 2 distinct points")
        return points

    @field_validator("travel_direction")
    @classmethod
    def verify_nonzero_direction(cls, direction: PointXY) -> PointXY:
        if direction == (0.0, 0.0):
            raise ValueError("must not be the zero vector")
        return direction


class NoParkingZone(StrictModel):
    name: str = Field(min_length=1)
    polygon: list[PixelXY] = Field(min_length=3, description="zone outline, at least 3 points")
    max_dwell_s: float = Field(
        gt=0, allow_inf_nan=False, description="stationary longer than this is a violation"
    )

    @field_validator("polygon")
    @classmethod
    def verify_simple_polygon(cls, polygon: list[PointXY]) -> list[PointXY]:
        crossing = _self_intersection(polygon)
        if crossing is not None:
            first, second = crossing
            raise ValueError(f"crosses itself: edges {first} and {second} meet")
        if abs(_signed_area(polygon)) < 1.0:
            raise ValueError("encloses no area (its points lie on one line or coincide)")
        return polygon


def _signed_area(polygon: list[PointXY]) -> float:
    """The shoelace formula: positive counter-clockwise, in square pixels.

    >>> _signed_area([(0, 0), (4, 0), (4, 3)])
    6.0
    """
    total = 0.0
    for (x0, y0), (x1, y1) in zip(polygon, [*polygon[1:], polygon[0]], strict=True):
        total += x0 * y1 - x1 * y0
    return total / 2


def _orientation(a: PointXY, b: PointXY, c: PointXY) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: PointXY, b: PointXY, p: PointXY) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_meet(a: PointXY, b: PointXY, c: PointXY, d: PointXY) -> bool:
    """Whether segments ab and cd share a point, touching included."""
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if ((o1 > 0 > o2) or (o1 < 0 < o2)) and ((o3 > 0 > o4) or (o3 < 0 < o4)):
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


def _self_intersection(polygon: list[PointXY]) -> tuple[int, int] | None:
    """The first pair of edges that are not neighbours and yet meet (edge i runs from point
    i to the next), or None for a simple polygon.

    >>> _self_intersection([(0, 0), (4, 4), (4, 0), (0, 4)])  # a bow tie
    (0, 2)
    >>> _self_intersection([(0, 0), (4, 0), (4, 4), (0, 4)]) is None
    True
    """
    n = len(polygon)
    edges = [(polygon[i], polygon[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the first and last edges share the first point
            if _segments_meet(*edges[i], *edges[j]):
                return i, j
    return None


class SceneConfig(StrictModel):
    """A camera's scene, validated once at start-up."""

    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    city: str = Field(min_length=1)
    fps: float = Field(gt=0, le=240, description="frame rate of the source")
    resolution_wh: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None, description="source resolution; when given, geometry is checked against it"
    )
    traffic_light: TrafficLight | None = None
    stop_line: StopLine | None = None
    no_parking_zones: list[NoParkingZone] = Field(default_factory=list)

    @model_validator(mode="after")
    def verify_stop_line_with_light(self) -> Self:
        if self.traffic_light is not None and self.stop_line is None:
            raise ValueError("stop_line: required when traffic_light is given")
        return self

    @model_validator(mode="after")
    def verify_inside_frame(self) -> Self:
        if self.resolution_wh is not None:
            problem = self.outside_frame(self.resolution_wh)
            if problem is not None:
                raise ValueError(problem)
        return self

    def misfit(self, frame_wh: tuple[int, int]) -> str | None:
        """Why this scene cannot describe a video of ``frame_wh`` pixels, or ``None``.

        A scene drawn at another ``resolution_wh`` is scaled to the video, so only its
        shape must match; one without is in the video's own pixels and must lie inside it.

        >>> s = SceneConfig(camera_id="c", city="x", fps=10, resolution_wh=(1280, 720))
        >>> s.misfit((640, 360)) is None, s.misfit((640, 480))
        (True, 'resolution_wh: 1280x720 is not the shape of the 640x480 video')
        """
        if self.resolution_wh is None:
            return self.outside_frame(frame_wh)
        (scene_w, scene_h), (width, height) = self.resolution_wh, frame_wh
        # 1%: a 1920x1080 scene on a 1920x1088 stream (coded height) still fits.
        if abs(scene_w * height - scene_h * width) > 0.01 * scene_w * height:
            return (
                f"resolution_wh: {scene_w}x{scene_h} is not the shape of the {width}x{height} video"
            )
        return None

    def outside_frame(self, frame_wh: tuple[int, int]) -> str | None:
        """The first piece of geometry that does not lie within a ``frame_wh`` frame, named
        by its YAML key, or ``None`` when all of it does (edges count as inside).

        >>> s = SceneConfig(camera_id="c", city="x", fps=10, stop_line={
        ...     "points": [[0, 50], [120, 50]], "travel_direction": [0, -1]})
        >>> s.outside_frame((100, 100))
        'stop_line.points: [120.0, 50.0] lies outside the 100x100 frame'
        """
        width, height = frame_wh
        where = f"lies outside the {width}x{height} frame"
        if self.traffic_light is not None:
            x, y, w, h = self.traffic_light.roi
            if x + w > width or y + h > height:
                return f"traffic_light.roi: {list(self.traffic_light.roi)} {where}"

        def outside(point: PointXY) -> bool:
            return not (0 <= point[0] <= width and 0 <= point[1] <= height)

        if self.stop_line is not None:
            for point in self.stop_line.points:
                if outside(point):
                    return f"stop_line.points: {list(point)} {where}"
        for index, zone in enumerate(self.no_parking_zones):
            for point in zone.polygon:
                if outside(point):
                    return f"no_parking_zones[{index}].polygon: {list(point)} {where}"
        return None

    @model_validator(mode="after")
    def verify_unique_zone_names(self) -> Self:
        names = [zone.name for zone in self.no_parking_zones]
        if len(names) != len(set(names)):
            raise ValueError("no_parking_zones: zone names must be unique")
        return self
