"""One camera's geometry: the scene file of ``shared/contracts.md``.

Pixel coordinates are in the source video's resolution, origin at the top left.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from services.common.arrays import PointXY
from services.common.config.base import StrictModel
from services.common.events import CAMERA_ID_PATTERN

PositiveInt = Annotated[int, Field(gt=0)]


class TrafficLight(StrictModel):
    roi: tuple[int, int, PositiveInt, PositiveInt] = Field(
        description="x, y, w, h around a vertical 3-lamp head: red top, amber middle, green bottom"
    )

    @model_validator(mode="after")
    def verify_roi_origin(self) -> Self:
        if self.roi[0] < 0 or self.roi[1] < 0:
            raise ValueError("roi x and y must be >= 0")
        return self


class StopLine(StrictModel):
    points: tuple[PointXY, PointXY] = Field(description="the two ends of the stop line")
    travel_direction: PointXY = Field(description="the direction of lawful travel across the line")

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
    polygon: list[PointXY] = Field(min_length=3, description="zone outline, at least 3 points")
    max_dwell_s: float = Field(gt=0, description="stationary longer than this is a violation")


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
