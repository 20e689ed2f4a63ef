"""``simulator.yaml``: the traffic each simulated camera shows.

A camera's geometry lives in its scene file; this file says what the scene cannot: signal
timings, lane counts, legal bays and how often each case (red-light runner, lawful amber
crossing, parking in a zone, a brief stop, legal parking) happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from services.common.config.base import StrictModel
from services.common.config.loader import load_model
from services.common.config.paths import SIMULATOR_FILE, config_path


class SignalTiming(StrictModel):
    green_s: float = Field(default=12, ge=4, le=120, description="green phase")
    # A driver who cannot stop at amber onset must be able to clear the line before red.
    amber_s: float = Field(default=3, ge=2.5, le=6, description="amber phase")
    red_s: float = Field(default=10, ge=6, le=120, description="red phase")
    offset_s: float = Field(default=0, ge=0, le=300, description="phase shift of the cycle")

    @property
    def cycle_s(self) -> float:
        return self.green_s + self.amber_s + self.red_s


class CameraTraffic(StrictModel):
    """One camera's traffic; intersection keys are ignored at a street and vice versa."""

    signal: SignalTiming = SignalTiming()
    approach_lanes: int = Field(default=3, ge=1, le=4, description="lanes the stop line spans")
    opposite_lanes: int = Field(default=2, ge=0, le=4, description="oncoming lanes beside them")
    arrivals_per_min: float = Field(default=10, ge=0, le=40, description="per lane")
    red_light_runners_per_cycle: float = Field(default=1.5, ge=0, le=2)
    amber_crossers_per_cycle: float = Field(default=0.5, ge=0, le=1)
    two_wheeler_share: float = Field(
        default=0, ge=0, le=0.8, description="share of arrivals that are motorbikes or bicycles"
    )
    queue_pullouts_per_red: float = Field(
        default=0, ge=0, le=1, description="queue heads that pull out and cross on red"
    )
    creepers_per_red: float = Field(
        default=0, ge=0, le=1, description="queue heads that creep over the line on red and stop"
    )
    bays: list[tuple[float, float]] = Field(
        default_factory=list, description="legal bays as x ranges on the kerb strip"
    )
    through_per_min: float = Field(default=12, ge=0, le=40, description="per direction")
    zone_violators_per_min: float = Field(default=3, ge=0, le=10)
    zone_violators_at_start: int = Field(
        default=0,
        ge=0,
        le=2,
        description=(
            "zone violators already parked at frame 0 (they pull in during the pre-roll), "
            "who stay the zone's max_dwell_s and more after it, then leave"
        ),
    )
    brief_stops_per_min: float = Field(default=2, ge=0, le=10)
    legal_parkers_per_min: float = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def verify_bays(self) -> Self:
        for i, (x0, x1) in enumerate(self.bays):
            if not 0 <= x0 < x1:
                raise ValueError(f"bays[{i}]: must be [x0, x1] with 0 <= x0 < x1")
        return self


class SimulatorConfig(StrictModel):
    cameras: dict[str, CameraTraffic] = Field(default_factory=dict)

    def traffic(self, camera_id: str) -> CameraTraffic:
        """The camera's settings, or the defaults for a camera this file does not name."""
        return self.cameras.get(camera_id, CameraTraffic())


def load_simulator_config(path: Path | str | None = None) -> SimulatorConfig:
    """Load and validate the simulator settings (the default ``simulator.yaml`` when ``path`` is
    None), raising ``ConfigError`` with key paths."""
    return load_model(SimulatorConfig, path if path is not None else config_path(SIMULATOR_FILE))
