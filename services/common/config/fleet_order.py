"""A camera fleet's order, which deals its cameras evenly over the ``frames`` partitions.

Kafka puts a keyed message on the partition its key hashes to. With a few dozen cameras
the hash is lumpy: 40 of the stack's cameras hash 15 and 25 onto two detectors' halves of
12 partitions, and the busier detector falls behind while the other idles. A fleet that
knows its order instead gives camera ``i`` slot ``i``, and the publisher puts the camera on
partition ``i`` mod the partition count, so partitions differ by one camera at most
(``Bus.publish``'s ``slot``). The file is the one ``citybrain stack up`` writes::

    cameras: [wuzhen-cam-01, wuzhen-cam-02, ..., wuzhen-cam-01-r001]

>>> FleetOrder(cameras=["a-1", "b-2", "a-1-r001"]).slots()
{'a-1': 0, 'b-2': 1, 'a-1-r001': 2}
>>> from services.common.config.loader import validate_data
>>> validate_data(FleetOrder, {"cameras": ["a-1", "a-1"]}, source="cameras.yaml")
Traceback (most recent call last):
...
services.common.config.loader.ConfigError: cameras.yaml: cameras: camera a-1 is listed twice
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from services.common.config.base import StrictModel
from services.common.config.loader import load_model


class FleetOrder(StrictModel):
    cameras: list[str] = Field(min_length=1, description="every camera id, in fleet order")

    @field_validator("cameras")
    @classmethod
    def _unique(cls, cameras: list[str]) -> list[str]:
        seen: set[str] = set()
        for camera_id in cameras:
            if camera_id in seen:
                raise ValueError(f"camera {camera_id} is listed twice")
            seen.add(camera_id)
        return cameras

    def slots(self) -> dict[str, int]:
        """Each camera's slot: its place in the order."""
        return {camera_id: slot for slot, camera_id in enumerate(self.cameras)}


def load_fleet_order(path: Path) -> FleetOrder:
    """Load and validate a fleet order file; raises ``ConfigError`` naming the key."""
    return load_model(FleetOrder, path)
