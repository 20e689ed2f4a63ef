"""A simulated camera as a detector frame source (``citybrain detect --source sim:CAMERA``)."""

from __future__ import annotations

from collections.abc import Iterator

from services.common.config.scene import SceneConfig
from services.detector.sources import SceneSourceOptions, SourceItem
from simulators.feed import simulate_camera


class SimulatorSource:
    """A simulated camera, as JPEG frames like a real feed sends."""

    def __init__(
        self, camera_id: str, *, seconds: float, seed: int = 0, variant: str = "day"
    ) -> None:
        self._camera = simulate_camera(camera_id, seconds=seconds, seed=seed, variant=variant)
        self.scene: SceneConfig = self._camera.scene

    def __iter__(self) -> Iterator[SourceItem]:
        yield from self._camera.jpeg_frames(quality=85)


def open_simulator(camera_id: str, options: SceneSourceOptions) -> SimulatorSource:
    """The scene-source factory registered as ``sim:``."""
    return SimulatorSource(camera_id, seconds=options.seconds, variant=options.variant)
