"""The live simulator's Prometheus metrics, built in one place on a caller-supplied registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass(frozen=True, slots=True)
class SimulatorMetrics:
    frames_published: Counter
    frames_skipped: Counter
    cameras: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SimulatorMetrics:
        return cls(
            frames_published=Counter(
                "citybrain_frames_published",
                "Frames a simulated camera sent to the frames topic.",
                ["camera_id"],
                registry=registry,
            ),
            frames_skipped=Counter(
                "citybrain_frames_skipped",
                "Frames a simulated camera did not send because the simulator fell over a "
                "second behind their capture time (a real camera drops them the same way).",
                ["camera_id"],
                registry=registry,
            ),
            cameras=Gauge(
                "citybrain_simulator_cameras",
                "Cameras this simulator replica streams (its share of the share group).",
                registry=registry,
            ),
        )
