"""The simulated cameras' options as every command takes them, checked in one place:
``--camera`` (repeatable; none means every catalogued camera), ``--variant``, ``--resolution``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common.config.catalogue import load_catalogue
from services.common.config.loader import ConfigError
from services.common.console import fail, parse_resolution
from simulators.render import VARIANTS


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    camera_ids: list[str]
    variant: str
    resolution_wh: tuple[int, int]


def simulation_options(
    *,
    cameras: Sequence[str] | None,
    variant: str,
    resolution: str,
    catalogue_path: Path | None,
) -> SimulationOptions:
    """The checked options; a bad one fails the command (exit 2) with a line naming it.

    >>> simulation_options(cameras=["wuzhen-cam-01"], variant="night", resolution="640x360",
    ...                    catalogue_path=None)
    SimulationOptions(camera_ids=['wuzhen-cam-01'], variant='night', resolution_wh=(640, 360))
    """
    if variant not in VARIANTS:
        raise fail(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    resolution_wh = parse_resolution(resolution)
    try:
        known = load_catalogue(catalogue_path).camera_ids()
    except ConfigError as exc:
        raise fail(str(exc)) from None
    unknown = [camera_id for camera_id in cameras or () if camera_id not in known]
    if unknown:
        names = ", ".join(repr(camera_id) for camera_id in unknown)
        raise fail(f"--camera: unknown camera {names}; known: {', '.join(known)}")
    return SimulationOptions(
        camera_ids=list(cameras) if cameras else known,
        variant=variant,
        resolution_wh=resolution_wh,
    )
