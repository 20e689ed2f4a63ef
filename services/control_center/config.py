"""The control center's settings (``control_center.yaml`` in the config directory, or a file
named with ``--config``), validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.common.config.loader import load_model
from services.common.config.paths import config_path

CONTROL_CENTER_FILE = "control_center.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetentionSettings(_Section):
    days: float = Field(
        default=30, gt=0, le=3650, description="closed entries older than this leave Redis"
    )
    archive: Path = Field(
        default=Path(".local/control-center/archive.sqlite"),
        description="the SQLite file archived entries move to",
    )
    interval_s: float = Field(default=60, gt=0, le=86_400, description="how often it runs")
    batch: int = Field(default=500, ge=1, le=10_000, description="entries moved per step")


class AuthSettings(_Section):
    max_failures: int = Field(
        default=10, ge=1, le=10_000, description="failed token checks per client per window"
    )
    failure_window_s: float = Field(default=60, gt=0, le=86_400)


class StreamSettings(_Section):
    heartbeat_s: float = Field(
        default=15, gt=0, le=300, description="a comment line this often keeps proxies open"
    )
    client_buffer: int = Field(
        default=1_000,
        ge=10,
        le=100_000,
        description="events a slow dashboard may fall behind before it must resume",
    )


class RedisPools(_Section):
    api: int = Field(default=32, ge=2, le=1_000, description="connections for API requests")
    writer: int = Field(
        default=8, ge=1, le=1_000, description="connections for a dispatcher in the same process"
    )


class ControlCenterConfig(_Section):
    retention: RetentionSettings = RetentionSettings()
    auth: AuthSettings = AuthSettings()
    stream: StreamSettings = StreamSettings()
    redis_pools: RedisPools = RedisPools()


def load_control_center_config(path: Path | None = None) -> ControlCenterConfig:
    """The settings in ``path``, else in ``control_center.yaml`` of the config directory
    (a config directory of your own without that file means the defaults)."""
    if path is None:
        path = config_path(CONTROL_CENTER_FILE)
        if not path.exists():
            return ControlCenterConfig()
    return load_model(ControlCenterConfig, path)
