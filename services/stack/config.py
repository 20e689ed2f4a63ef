"""The stack file (``configs/stack.yaml``): which processes a local stack runs, and where.

It is validated once, at start-up; a bad file fails with the YAML key that is wrong::

    configs/stack.yaml: detectors.replicas: must be at most frames.partitions (8)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.config.loader import load_model

DEFAULT_STACK_PATH = Path(__file__).resolve().parents[2] / "configs" / "stack.yaml"

Port = Annotated[int, Field(ge=1024, le=65535)]
_RESOLUTION_RE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ports(_Strict):
    """Every port the stack listens on, all on 127.0.0.1.

    Services that run several replicas take consecutive ports from their base: detector
    ``i`` (1-based) serves ``/metrics`` on ``detector_metrics + i - 1``.
    """

    kafka: Port = Field(default=9092, description="Kafka broker (controller on kafka + 1)")
    redis: Port = 6379
    prometheus: Port = 9090
    control_center: Port = 8080
    detector_metrics: Port = Field(default=9102, description="first detector's /metrics")
    dispatcher_metrics: Port = Field(default=6066, description="first dispatcher's /metrics")
    simulator_metrics: Port = Field(default=9202, description="first simulator's /metrics")

    @model_validator(mode="after")
    def verify_no_overlap(self) -> Self:
        # Replica ranges are checked against the replica counts in StackConfig.
        singles = [self.kafka, self.kafka + 1, self.redis, self.prometheus, self.control_center]
        if len(set(singles)) != len(singles):
            raise ValueError(
                "kafka, kafka + 1 (controller), redis, prometheus and "
                "control_center must be distinct ports"
            )
        return self


class Fleet(_Strict):
    """The cameras the stack knows: the catalogued ones, then numbered copies of them.

    Copy ``k`` of ``wuzhen-cam-01`` is ``wuzhen-cam-01-r00k``: the same scene and traffic
    settings, different traffic (the simulator seeds by camera id).
    """

    cameras: int = Field(default=120, ge=1, le=2000, description="how many cameras exist")
    fps: float = Field(default=5, gt=0, le=30, description="frame rate of every camera")
    resolution: str = Field(default="1280x720", description="frame size WIDTHxHEIGHT")

    @field_validator("resolution")
    @classmethod
    def verify_resolution(cls, text: str) -> str:
        if _RESOLUTION_RE.match(text) is None:
            raise ValueError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
        return text

    @property
    def resolution_wh(self) -> tuple[int, int]:
        width, height = self.resolution.split("x")
        return int(width), int(height)


class Simulators(_Strict):
    replicas: int = Field(default=1, ge=0, le=16, description="simulator processes")
    cameras: int = Field(
        default=8,
        ge=0,
        description="the first N fleet cameras, streamed live by the simulators; the rest "
        "are left to `citybrain loadtest`",
    )


class Detectors(_Strict):
    replicas: int = Field(default=2, ge=1, le=32, description="detector processes, one group")
    handover_warmup_s: float = Field(
        default=30,
        ge=0,
        le=600,
        description="history a detector replays, silently, for a camera it takes over",
    )
    session_timeout_s: float = Field(
        default=10,
        ge=6,
        le=300,
        description="how long the group waits for a silent detector before moving its cameras",
    )


class Dispatchers(_Strict):
    replicas: int = Field(default=1, ge=1, le=6, description="dispatcher processes, one group")


class Frames(_Strict):
    partitions: int = Field(default=12, ge=1, le=256, description="partitions of `frames`")


class Toggle(_Strict):
    enabled: bool = True


class StackConfig(_Strict):
    """A whole local topology; ``name`` prefixes its consumer groups and queue keys."""

    name: str = Field(default="citybrain", pattern=r"^[a-z0-9-]+$", max_length=40)
    ports: Ports = Ports()
    fleet: Fleet = Fleet()
    simulators: Simulators = Simulators()
    detectors: Detectors = Detectors()
    dispatchers: Dispatchers = Dispatchers()
    frames: Frames = Frames()
    control_center: Toggle = Toggle()
    prometheus: Toggle = Toggle()

    @model_validator(mode="after")
    def verify_partitions_cover_detectors(self) -> Self:
        if self.detectors.replicas > self.frames.partitions:
            raise ValueError(
                f"detectors.replicas ({self.detectors.replicas}) must be at most "
                f"frames.partitions ({self.frames.partitions}): a replica without a "
                "partition would sit idle"
            )
        return self

    @model_validator(mode="after")
    def verify_simulated_cameras_exist(self) -> Self:
        if self.simulators.cameras > self.fleet.cameras:
            raise ValueError(
                f"simulators.cameras ({self.simulators.cameras}) must be at most "
                f"fleet.cameras ({self.fleet.cameras})"
            )
        if self.simulators.cameras and not self.simulators.replicas:
            raise ValueError("simulators.replicas: must be at least 1 to stream any camera")
        return self

    @model_validator(mode="after")
    def verify_port_ranges(self) -> Self:
        p = self.ports
        ranges = {
            "detector_metrics": range(
                p.detector_metrics, p.detector_metrics + self.detectors.replicas
            ),
            "dispatcher_metrics": range(
                p.dispatcher_metrics, p.dispatcher_metrics + self.dispatchers.replicas
            ),
            "simulator_metrics": range(
                p.simulator_metrics, p.simulator_metrics + self.simulators.replicas
            ),
        }
        singles = {
            "kafka": p.kafka,
            "redis": p.redis,
            "prometheus": p.prometheus,
            "control_center": p.control_center,
        }
        taken: dict[int, str] = {p.kafka + 1: "kafka + 1"}
        taken.update({port: key for key, port in singles.items()})
        for key, ports in ranges.items():
            for port in ports:
                if port in taken:
                    raise ValueError(
                        f"ports.{key}: its replicas use {ports.start}-{ports.stop - 1}, which "
                        f"overlaps ports.{taken[port]} ({port})"
                    )
                taken[port] = key
        return self


def load_stack_config(path: Path | str = DEFAULT_STACK_PATH) -> StackConfig:
    """Load and validate a stack file, raising ``ConfigError`` with the key path."""
    return load_model(StackConfig, path)
