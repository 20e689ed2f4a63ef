"""``citybrain run``: the whole pipeline in one process.

Simulated cameras (one thread each, paced in real time) → detector pipelines → bus
``violations`` → dispatch core → control-center queue, with the dashboard and ``/metrics`` on
one port. On embedded defaults the bus and queue are the in-memory ones, so nothing else has
to run; ``--bus kafka://...`` and ``--queue redis://...`` swap in the real ones.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry, Counter
from rich.markup import escape

from services.common.bus import Bus, BusError, BusMessage, open_bus
from services.common.config.catalogue import Catalogue, load_catalogue
from services.common.config.loader import ConfigError
from services.common.console import CatalogueOption, fail, out
from services.common.events import VIOLATIONS_DLQ_TOPIC, VIOLATIONS_TOPIC
from services.common.queue import ControlCenterQueue, open_queue
from services.control_center.api import create_app
from services.control_center.config import ControlCenterConfig
from services.control_center.operators import (
    DEFAULT_OPERATORS_PATH,
    OperatorStore,
    replace_operator,
)
from services.control_center.server import AppServer
from services.control_center.workflow import Role
from services.detector.evidence import EvidenceWriter
from services.detector.metrics import DetectorMetrics
from services.detector.recorder import EvidenceRecorder
from services.detector.worker import DetectorWorker, bus_sink
from services.dispatcher.bus_worker import BusDeadLetters, dispatch_from_bus
from services.dispatcher.config import (
    DispatchConfig,
    load_dispatch_config,
)
from services.dispatcher.core import Dispatcher
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.steps import DictStore, DispatchSteps
from simulators.feed import VARIANTS, paced, simulate_camera
from simulators.options import simulation_options

log = logging.getLogger(__name__)

# How long a stop waits for the camera threads to finish their frame.
CAMERA_STOP_S = 5.0


@dataclass(frozen=True, slots=True)
class RunSettings:
    cameras: list[str]
    variant: str
    resolution_wh: tuple[int, int]
    segment_s: float
    evidence_dir: Path


def _now_ms() -> int:
    return int(time.time() * 1000)


def camera_loop(
    camera_id: str,
    *,
    settings: RunSettings,
    bus: Bus,
    metrics: DetectorMetrics,
    stop: threading.Event,
) -> None:
    """Feed one simulated camera through its detector, a fresh traffic segment at a time."""
    segment = 0
    evidence = EvidenceWriter(settings.evidence_dir)
    publish = bus_sink(bus)
    while not stop.is_set():
        camera = simulate_camera(
            camera_id,
            seconds=settings.segment_s,
            seed=segment,
            variant=settings.variant,
            resolution_wh=settings.resolution_wh,
            start_ts_ms=_now_ms(),
        )
        # A new segment is a new simulated street: start its tracks from nothing.
        worker = DetectorWorker(
            scenes={camera_id: camera.scene}.get,
            sinks=[publish],
            metrics=metrics,
            evidence=evidence,
            recorder=EvidenceRecorder(settings.evidence_dir),
        )
        try:
            for frame in paced(camera.jpeg_frames(), realtime=True):
                if stop.is_set():
                    return
                worker.handle(frame)
        finally:
            # Sheets still waiting for their "past the line" frame get what there is.
            worker.close()
        segment += 1


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one ``citybrain run`` did, from its metrics."""

    frames: int
    frames_dropped: int
    violations: dict[str, int]
    dispatched: int
    evidence_dir: Path

    @classmethod
    def of(
        cls, detector: DetectorMetrics, dispatcher: DispatcherMetrics, *, evidence_dir: Path
    ) -> RunSummary:
        return cls(
            frames=sum(_totals(detector.frames_processed, "camera_id").values()),
            frames_dropped=sum(_totals(detector.frames_dropped, "camera_id").values()),
            violations=_totals(detector.violations, "type"),
            dispatched=sum(_totals(dispatcher.dispatched).values()),
            evidence_dir=evidence_dir,
        )

    def line(self) -> str:
        """One line for the end of the run.

        >>> summary = RunSummary(frames=1200, frames_dropped=3, dispatched=2,
        ...     violations={"red_light": 2, "illegal_parking": 1}, evidence_dir=Path("ev"))
        >>> for part in summary.line().split("; "):
        ...     print(part)
        citybrain run: 1,200 frames (3 dropped)
        violations: illegal_parking 1, red_light 2
        entries dispatched: 2
        evidence: ev
        """
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted(self.violations.items()))
        return (
            f"citybrain run: {self.frames:,} frames ({self.frames_dropped:,} dropped); "
            f"violations: {kinds or 'none'}; entries dispatched: {self.dispatched:,}; "
            f"evidence: {self.evidence_dir}"
        )


def _totals(counter: Counter, label: str | None = None) -> dict[str, int]:
    """A counter's totals by ``label`` (all under ``""`` without one)."""
    totals: dict[str, int] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "") if label else ""
                totals[key] = totals.get(key, 0) + int(sample.value)
    return totals


async def serve(
    *,
    settings: RunSettings,
    bus: Bus,
    queue: ControlCenterQueue,
    api_queue: ControlCenterQueue,
    operators: OperatorStore,
    catalogue: Catalogue,
    config: DispatchConfig,
    host: str,
    port: int,
    duration_s: float | None,
) -> RunSummary:
    """Run cameras, dispatcher and control center until a signal or ``duration_s``; returns
    what the run did."""
    registry = CollectorRegistry()
    detector_metrics = DetectorMetrics.create(registry)
    dispatcher_metrics = DispatcherMetrics.create(registry)
    steps: DispatchSteps[BusMessage] = DispatchSteps(
        dispatcher=Dispatcher(config=config, catalogue=catalogue),
        queue=queue,
        metrics=dispatcher_metrics,
        store=DictStore(),
        dead_letters=BusDeadLetters(bus),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)

    settings.evidence_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(
        queue=api_queue,
        operators=operators,
        registry=registry,
        evidence_dir=settings.evidence_dir,
    )
    server = AppServer(app, host=host, port=port)
    await server.start()
    camera_stop = threading.Event()
    threads = [
        threading.Thread(
            target=camera_loop,
            name=f"camera-{camera_id}",
            kwargs={
                "camera_id": camera_id,
                "settings": settings,
                "bus": bus,
                "metrics": detector_metrics,
                "stop": camera_stop,
            },
            daemon=True,
        )
        for camera_id in settings.cameras
    ]
    for thread in threads:
        thread.start()
    log.info(
        "citybrain running: %d cameras, dashboard http://%s:%d/, metrics /metrics",
        len(threads),
        host,
        port,
    )
    try:
        await dispatch_from_bus(
            bus,
            steps,
            max_events=config.batch.max_events,
            prune_interval_s=config.state_prune_interval_s,
            stop=stop,
        )
    finally:
        camera_stop.set()
        # One deadline for all: a camera blocked on a bus that is away must not hold the stop
        # up once per camera (the threads are daemons, and go with the process).
        deadline_s = time.monotonic() + CAMERA_STOP_S
        for thread in threads:
            await asyncio.to_thread(thread.join, max(0.0, deadline_s - time.monotonic()))
        await server.stop()
        await queue.close()
        if api_queue is not queue:
            await api_queue.close()
        bus.close()
    return RunSummary.of(
        detector_metrics, dispatcher_metrics, evidence_dir=settings.evidence_dir.resolve()
    )


def run_command(
    *,
    bus: Annotated[
        str, typer.Option(help="memory:// (embedded) or kafka://HOST:PORT.")
    ] = "memory://",
    queue: Annotated[
        str, typer.Option(help="memory:// (embedded) or redis://HOST:PORT.")
    ] = "memory://",
    host: Annotated[str, typer.Option(help="Address for the dashboard and /metrics.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port for the dashboard and /metrics.")] = 8080,
    camera: Annotated[
        list[str] | None,
        typer.Option("--camera", help="Camera id to simulate; repeat it. Default: all."),
    ] = None,
    variant: Annotated[str, typer.Option(help=f"Simulator look: {', '.join(VARIANTS)}.")] = "day",
    resolution: Annotated[str, typer.Option(help="Simulated frame size, WIDTHxHEIGHT.")] = (
        "1280x720"
    ),
    segment_s: Annotated[
        float, typer.Option(min=10, help="Seconds of traffic simulated at a time per camera.")
    ] = 300,
    seconds: Annotated[
        float | None, typer.Option(min=1, help="Stop after this long (default: until Ctrl-C).")
    ] = None,
    evidence_dir: Annotated[
        Path, typer.Option(help="Where evidence snapshots are written.")
    ] = Path("evidence"),
    catalogue: CatalogueOption = None,
    dispatch_config: Annotated[
        Path | None,
        typer.Option(
            help="Dispatch rules (priorities, grouping, routing); default: dispatch.yaml in the "
            "config directory."
        ),
    ] = None,
    operators: Annotated[
        Path, typer.Option(help="The operators file (YAML) the dashboard signs in against.")
    ] = DEFAULT_OPERATORS_PATH,
    demo_operator: Annotated[
        str | None,
        typer.Option(help="Create this supervisor (replacing it) and print its token at start."),
    ] = None,
) -> None:
    """Run the whole pipeline in one process: simulated Wuzhen and Hangzhou cameras,
    detectors, dispatcher and control-center queue, with the dashboard and /metrics.

    With no options it needs no Kafka or Redis. Open http://127.0.0.1:8080/ to watch the
    violations arrive; stop with Ctrl-C.
    """
    options = simulation_options(
        cameras=camera, variant=variant, resolution=resolution, catalogue_path=catalogue
    )
    try:
        cat = load_catalogue(catalogue)
        config = load_dispatch_config(dispatch_config)
        settings = RunSettings(
            cameras=options.camera_ids,
            variant=options.variant,
            resolution_wh=options.resolution_wh,
            segment_s=segment_s,
            evidence_dir=evidence_dir,
        )
        pools = ControlCenterConfig().redis_pools
        the_bus, the_queue = open_bus(bus), open_queue(queue, pool_size=pools.writer)
        # Fails at once, naming it, when the bus does not answer.
        the_bus.ensure_topics([VIOLATIONS_TOPIC, VIOLATIONS_DLQ_TOPIC])
        # The API gets its own pool, so a burst of reads cannot starve the dispatcher's
        # writes; the in-memory queue is one object both must share.
        api_queue = (
            the_queue if queue.startswith("memory:") else open_queue(queue, pool_size=pools.api)
        )
        if demo_operator is not None:
            token = replace_operator(operators, demo_operator, Role.SUPERVISOR)
            out.print(f"demo operator {demo_operator!r} (supervisor); sign in with this token:")
            print(token, flush=True)
        store = OperatorStore(operators)
    except (ConfigError, ValueError, BusError) as exc:
        raise fail(str(exc)) from None
    try:
        summary = asyncio.run(
            serve(
                settings=settings,
                bus=the_bus,
                queue=the_queue,
                api_queue=api_queue,
                operators=store,
                catalogue=cat,
                config=config,
                host=host,
                port=port,
                duration_s=seconds,
            )
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise fail(f"{host}:{port} is in use; choose another port with --port") from None
    out.print(escape(summary.line()))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
