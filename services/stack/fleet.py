"""The stack's camera fleet: the catalogued cameras, then numbered copies of them.

A load test needs more cameras than the catalogue has. Copy ``k`` of a camera keeps its
scene, district and traffic settings under a new id, so the dispatcher knows where it is and
the simulator gives it its own traffic (traffic is seeded by camera id). Every scene is
rewritten at the fleet's frame rate. The files are written once per ``stack up`` into one
folder, which every process of the stack reads:

    <dir>/cities.yaml          the catalogue, copies included
    <dir>/cameras.yaml         every camera id, in fleet order
    <dir>/simulator.yaml       traffic settings per camera
    <dir>/scenes/<id>.yaml     one scene per camera

>>> fleet_camera_ids(["a-1", "b-2"], count=5)
['a-1', 'b-2', 'a-1-r001', 'b-2-r001', 'a-1-r002']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from services.common.config.catalogue import (
    Camera,
    Catalogue,
    catalogue_path,
    load_catalogue,
    scene_path,
)
from services.common.config.fleet_order import load_fleet_order
from services.common.config.loader import ConfigError, load_model, read_yaml
from services.common.config.paths import SIMULATOR_FILE, config_path
from services.common.config.scene import SceneConfig


@dataclass(frozen=True, slots=True)
class FleetPaths:
    """Where a written fleet's files are."""

    root: Path

    @property
    def catalogue(self) -> Path:
        return self.root / "cities.yaml"

    @property
    def simulator_config(self) -> Path:
        return self.root / "simulator.yaml"

    @property
    def scenes(self) -> Path:
        return self.root / "scenes"

    @property
    def order(self) -> Path:
        return self.root / "cameras.yaml"

    def camera_ids(self) -> list[str]:
        """The fleet's camera ids in fleet order (the catalogue lists them by city)."""
        return load_fleet_order(self.order).cameras


def fleet_camera_ids(base_ids: list[str], *, count: int) -> list[str]:
    """The first ``count`` fleet ids: the base ids, then copy 1 of each, then copy 2, ..."""
    return [_copy_id(base_ids[i % len(base_ids)], i // len(base_ids)) for i in range(count)]


def _copy_id(base_id: str, copy: int) -> str:
    return base_id if copy == 0 else f"{base_id}-r{copy:03d}"


def write_fleet(
    root: Path,
    *,
    cameras: int,
    fps: float,
    catalogue_file: Path | None = None,
    simulator_config_path: Path | None = None,
) -> FleetPaths:
    """Write a fleet of ``cameras`` cameras at ``fps`` under ``root``; returns its paths."""
    catalogue = load_catalogue(catalogue_file)
    traffic = _traffic_by_camera(simulator_config_path or config_path(SIMULATOR_FILE))
    base_ids = catalogue.camera_ids()
    paths = FleetPaths(root)
    paths.scenes.mkdir(parents=True, exist_ok=True)
    for stale in paths.scenes.glob("*.yaml"):
        stale.unlink()
    cities = catalogue.model_dump(mode="json")
    for city in cities["cities"].values():
        city["cameras"] = []
    traffic_out: dict[str, object] = {}
    ids = fleet_camera_ids(base_ids, count=cameras)
    for index, camera_id in enumerate(ids):
        base_id = base_ids[index % len(base_ids)]
        city_key, camera = _find(catalogue, base_id)
        scene = load_model(SceneConfig, scene_path(catalogue_path(catalogue_file), camera))
        scene_data = scene.model_dump(mode="json", exclude_none=True)
        scene_data.update(camera_id=camera_id, fps=fps)
        SceneConfig.model_validate(scene_data)
        (paths.scenes / f"{camera_id}.yaml").write_text(
            yaml.safe_dump(scene_data, sort_keys=False), encoding="utf-8"
        )
        entry = camera.model_dump(mode="json")
        entry.update(camera_id=camera_id, scene=f"scenes/{camera_id}.yaml")
        cities["cities"][city_key]["cameras"].append(entry)
        # A camera the file does not name gets the simulator's defaults, as does its copy.
        traffic_out[camera_id] = traffic.get(base_id, {})
    cities["cities"] = {k: v for k, v in cities["cities"].items() if v["cameras"]}
    Catalogue.model_validate(cities)
    paths.catalogue.write_text(yaml.safe_dump(cities, sort_keys=False), encoding="utf-8")
    paths.simulator_config.write_text(
        yaml.safe_dump({"cameras": traffic_out}, sort_keys=False), encoding="utf-8"
    )
    paths.order.write_text(yaml.safe_dump({"cameras": ids}), encoding="utf-8")
    return paths


def _traffic_by_camera(path: Path) -> dict[str, object]:
    """The simulator file's settings per camera, as written: each simulator validates the
    fleet's copy when it starts, and the stack, which only copies them, need not know them.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "simulator.yaml"
    ...     _ = path.write_text("cameras: {a-1: {arrivals_per_min: 4}}")
    ...     _traffic_by_camera(path)
    {'a-1': {'arrivals_per_min': 4}}
    """
    data = read_yaml(path)
    cameras = data.get("cameras", {}) if isinstance(data, dict) else None
    if not isinstance(cameras, dict):
        raise ConfigError(str(path), ["cameras: must be a mapping of camera id to settings"])
    return {str(camera_id): settings for camera_id, settings in cameras.items()}


def _find(catalogue: Catalogue, camera_id: str) -> tuple[str, Camera]:
    found = catalogue.camera(camera_id)
    assert found is not None  # the id came from this catalogue
    return found
