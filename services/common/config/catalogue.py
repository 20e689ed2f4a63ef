"""The city/camera catalogue: where each camera stands and who answers for its district."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config.loader import load_model
from services.common.config.paths import CATALOGUE_FILE, config_path
from services.common.events import CAMERA_ID_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraKind(StrEnum):
    INTERSECTION = "intersection"
    STREET = "street"


class District(_Strict):
    name: str = Field(min_length=1, description="display name")
    unit: str = Field(min_length=1, description="the responsible unit that resolves violations")


class Camera(_Strict):
    camera_id: str = Field(pattern=CAMERA_ID_PATTERN)
    kind: CameraKind
    district: str = Field(min_length=1, description="a key of the city's districts")
    location: str = Field(min_length=1, description="street or intersection name")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    scene: str = Field(description="scene file, relative to the catalogue's folder")
    tags: list[str] = Field(default_factory=list, description="e.g. school-zone, bus-lane")


class City(_Strict):
    name: str = Field(min_length=1)
    timezone: str = Field(default="Asia/Shanghai")
    districts: dict[str, District] = Field(min_length=1)
    cameras: list[Camera] = Field(min_length=1)

    @model_validator(mode="after")
    def verify_camera_districts(self) -> Self:
        for camera in self.cameras:
            if camera.district not in self.districts:
                raise ValueError(
                    f"camera {camera.camera_id}: district {camera.district!r} is not one of "
                    f"{sorted(self.districts)}"
                )
        return self


class Catalogue(_Strict):
    cities: dict[str, City] = Field(min_length=1)

    @model_validator(mode="after")
    def verify_unique_camera_ids(self) -> Self:
        ids = [cam.camera_id for city in self.cities.values() for cam in city.cameras]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"camera ids must be unique; repeated: {duplicates}")
        return self

    def camera(self, camera_id: str) -> tuple[str, Camera] | None:
        """The city key and camera entry for ``camera_id``, or None if it is not catalogued."""
        for city_key, city in self.cities.items():
            for cam in city.cameras:
                if cam.camera_id == camera_id:
                    return city_key, cam
        return None

    def camera_ids(self) -> list[str]:
        return [cam.camera_id for city in self.cities.values() for cam in city.cameras]


def catalogue_path(path: Path | str | None = None) -> Path:
    """``path``, or ``cities.yaml`` in the config directory in force."""
    return Path(path) if path is not None else config_path(CATALOGUE_FILE)


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """Load the catalogue (the default ``cities.yaml`` when ``path`` is None) and validate it."""
    return load_model(Catalogue, catalogue_path(path))


def scene_path(catalogue_path: Path | str, camera: Camera) -> Path:
    """Where a catalogued camera's scene file lives."""
    return Path(catalogue_path).resolve().parent / camera.scene
