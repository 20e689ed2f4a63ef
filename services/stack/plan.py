"""From a stack file to the processes it runs: names, command lines, ports, health checks.

Pure: nothing here starts anything, so the plan of a stack file can be checked by a test.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from services.stack.config import StackConfig
from services.stack.fleet import FleetPaths, fleet_camera_ids
from services.stack.processes import ServiceSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def local_dir() -> Path:
    """``.local`` of the repository, or ``$CITYBRAIN_LOCAL_DIR`` (as the infra scripts use)."""
    return Path(os.environ.get("CITYBRAIN_LOCAL_DIR") or REPO_ROOT / ".local")


@dataclass(frozen=True, slots=True)
class StackPaths:
    """Everything a stack writes, under ``.local/stack-<name>/``."""

    root: Path

    @classmethod
    def of(cls, config: StackConfig) -> StackPaths:
        return cls(local_dir() / f"stack-{config.name}")

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def fleet(self) -> FleetPaths:
        return FleetPaths(self.root / "fleet")

    @property
    def prometheus_config(self) -> Path:
        return self.root / "prometheus" / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.root / "prometheus" / "data"

    @property
    def evidence(self) -> Path:
        return self.root / "evidence"

    @property
    def truth(self) -> Path:
        return self.root / "truth"

    @property
    def operators(self) -> Path:
        """The control center's operators file: `citybrain operators add NAME --file` it."""
        return self.root / "operators.yaml"


@dataclass(frozen=True, slots=True)
class Urls:
    bus: str
    queue: str
    prometheus: str
    control_center: str

    @classmethod
    def of(cls, config: StackConfig) -> Urls:
        p = config.ports
        return cls(
            bus=f"kafka://{HOST}:{p.kafka}",
            queue=f"redis://{HOST}:{p.redis}/0",
            prometheus=f"http://{HOST}:{p.prometheus}",
            control_center=f"http://{HOST}:{p.control_center}",
        )


def detector_group(config: StackConfig) -> str:
    return f"{config.name}-detector"


def dispatcher_group(config: StackConfig) -> str:
    return f"{config.name}-dispatcher"


def simulated_cameras(config: StackConfig, base_ids: list[str]) -> list[list[str]]:
    """The stack simulators' cameras: the first ``simulators.cameras`` of the fleet, dealt
    round-robin to the replicas."""
    cameras = fleet_camera_ids(base_ids, count=config.simulators.cameras)
    replicas = config.simulators.replicas
    return [cameras[i::replicas] for i in range(replicas)]


def _citybrain(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "services", *args)


def _metrics(port: int) -> str:
    return f"http://{HOST}:{port}/metrics"


def plan_services(
    config: StackConfig, paths: StackPaths, *, base_ids: list[str]
) -> list[ServiceSpec]:
    """Every service process of the stack, in start order (consumers before producers)."""
    urls = Urls.of(config)
    ports = config.ports
    fleet = paths.fleet
    specs: list[ServiceSpec] = []
    if config.prometheus.enabled:
        specs.append(
            ServiceSpec(
                name="prometheus",
                role="prometheus",
                argv=(
                    "prometheus",
                    f"--config.file={paths.prometheus_config}",
                    f"--storage.tsdb.path={paths.prometheus_data}",
                    f"--web.listen-address={HOST}:{ports.prometheus}",
                    "--storage.tsdb.retention.time=1d",
                ),
                health_url=f"{urls.prometheus}/-/ready",
            )
        )
    for i in range(config.dispatchers.replicas):
        port = ports.dispatcher_metrics + i
        specs.append(
            ServiceSpec(
                name=f"dispatcher-{i + 1}",
                role="dispatcher",
                argv=_citybrain(
                    "dispatch", "--bus", urls.bus, "--queue", urls.queue,
                    "--metrics-port", str(port), "--metrics-host", HOST,
                    "--catalogue", str(fleet.catalogue),
                    "--group", dispatcher_group(config), "--queue-prefix", config.name,
                ),
                health_url=_metrics(port),
                metrics_url=_metrics(port),
            )
        )  # fmt: skip
    if config.control_center.enabled:
        specs.append(
            ServiceSpec(
                name="control-center",
                role="control-center",
                argv=_citybrain(
                    "control-center", "--queue", urls.queue, "--queue-prefix", config.name,
                    "--host", HOST, "--port", str(ports.control_center),
                    "--operators", str(paths.operators), "--evidence-dir", str(paths.evidence),
                ),
                health_url=f"{urls.control_center}/healthz",
                metrics_url=f"{urls.control_center}/metrics",
            )
        )  # fmt: skip
    for i in range(config.detectors.replicas):
        port = ports.detector_metrics + i
        specs.append(
            ServiceSpec(
                name=f"detector-{i + 1}",
                role="detector",
                argv=_citybrain(
                    "detect", "--source", urls.bus, "--bus", urls.bus,
                    "--scenes-dir", str(fleet.scenes), "--snapshots", str(paths.evidence),
                    "--metrics-port", str(port), "--metrics-host", HOST,
                    "--group-id", detector_group(config),
                    "--handover-warmup-s", f"{config.detectors.handover_warmup_s:g}",
                    "--session-timeout-s", f"{config.detectors.session_timeout_s:g}",
                ),
                health_url=_metrics(port),
                metrics_url=_metrics(port),
            )
        )  # fmt: skip
    for i, cameras in enumerate(simulated_cameras(config, base_ids)):
        if not cameras:
            continue
        port = ports.simulator_metrics + i
        camera_args = [arg for camera in cameras for arg in ("--camera", camera)]
        specs.append(
            ServiceSpec(
                name=f"simulator-{i + 1}",
                role="simulator",
                argv=_citybrain(
                    "simulate-live", "--to", urls.bus, *camera_args,
                    "--catalogue", str(fleet.catalogue), "--config", str(fleet.simulator_config),
                    "--fleet-order", str(fleet.order),
                    "--resolution", config.fleet.resolution, "--metrics-port", str(port),
                    "--truth", str(paths.truth / f"simulator-{i + 1}.jsonl"),
                ),
                health_url=_metrics(port),
                metrics_url=_metrics(port),
            )
        )  # fmt: skip
    return specs


def scrape_targets(specs: list[ServiceSpec]) -> dict[str, list[str]]:
    """``job -> [host:port]`` for Prometheus: one job per role, named like compose's services."""
    jobs: dict[str, list[str]] = {}
    for spec in specs:
        if spec.metrics_url is None:
            continue
        hostport = spec.metrics_url.split("//", 1)[1].split("/", 1)[0]
        jobs.setdefault(spec.role, []).append(hostport)
    return jobs
