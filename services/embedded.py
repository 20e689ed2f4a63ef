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
from prometheus_client import CollectorRegistry

from services.common.bus import Bus, BusMessage, open_bus
from services.common.config.catalogue import Catalogue, catalogue_path, load_catalogue
from services.common.config.loader import ConfigError
from services.common.console import CatalogueOption, fail, out, parse_resolution
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
from services.detector.worker import DetectorWorker, bus_sink
from services.dispatcher.config import (
    DispatchConfig,
    load_dispatch_config,
)
from services.dispatcher.core import DeadLetter, Dispatcher, GroupState
from services.dispatcher.executor import PlanExecutor
from services.dispatcher.metrics import DispatcherMetrics
from simulators.feed import VARIANTS, paced, simulate_camera

log = logging.getLogger(__name__)

EMBEDDED_GROUP_ID = "citybrain-embedded-dispatcher"


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
        )
        for frame in paced(camera.jpeg_frames(), realtime=True):
            if stop.is_set():
                return
            worker.handle(frame)
        segment += 1


class EmbeddedDispatcher:
    """The dispatch core on any bus: poll, plan, write, then commit (at-least-once).

    The faust app does the same on Kafka with changelogged tables; here the grouping state
    is a dict, which is enough for one process whose bus lives as long as it does.
    """

    def __init__(
        self,
        *,
        bus: Bus,
        dispatcher: Dispatcher,
        executor: PlanExecutor,
        metrics: DispatcherMetrics,
    ) -> None:
        self._bus = bus
        self._dispatcher = dispatcher
        self._executor = executor
        self._metrics = metrics
        self._state: dict[str, GroupState] = {}
        self._latest_ts_ms = 0
        self._next_prune_s = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        self._bus.ensure_topics([VIOLATIONS_TOPIC, VIOLATIONS_DLQ_TOPIC])
        consumer = self._bus.subscribe([VIOLATIONS_TOPIC.name], group_id=EMBEDDED_GROUP_ID)
        try:
            while not stop.is_set():
                batch = await asyncio.to_thread(consumer.poll, timeout_s=0.5, max_records=500)
                if batch:
                    await self.handle(batch)
                    consumer.commit(batch)
        finally:
            consumer.close()

    async def handle(self, batch: list[BusMessage]) -> None:
        self._metrics.events.inc(len(batch))
        plan = self._dispatcher.plan([m.value for m in batch], state=self._state, now_ms=_now_ms())
        for message, decision in zip(batch, plan.decisions, strict=True):
            if isinstance(decision, DeadLetter):
                headers = self._executor.dead_letter(
                    decision,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                )
                self._bus.publish(
                    VIOLATIONS_DLQ_TOPIC.name, message.value, key=message.key, headers=headers
                )
        await self._executor.write_entries(plan)
        await self._executor.write_repeats(plan)
        self._state.update(plan.groups)
        for group in plan.groups.values():
            self._latest_ts_ms = max(self._latest_ts_ms, group.last_ts_ms)
        # Like the faust app's prune timer: a scan of all state is not per-batch work.
        if time.monotonic() >= self._next_prune_s:
            self._next_prune_s = time.monotonic() + self._dispatcher.config.state_prune_interval_s
            for key in [
                k
                for k, group in self._state.items()
                if self._dispatcher.expired(group, latest_ts_ms=self._latest_ts_ms)
            ]:
                del self._state[key]


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
) -> None:
    """Run cameras, dispatcher and control center until a signal or ``duration_s``."""
    registry = CollectorRegistry()
    detector_metrics = DetectorMetrics.create(registry)
    dispatcher_metrics = DispatcherMetrics.create(registry)
    dispatcher = EmbeddedDispatcher(
        bus=bus,
        dispatcher=Dispatcher(config=config, catalogue=catalogue),
        executor=PlanExecutor(queue=queue, metrics=dispatcher_metrics, retry=config.redis_retry),
        metrics=dispatcher_metrics,
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
        await dispatcher.run(stop)
    finally:
        camera_stop.set()
        for thread in threads:
            await asyncio.to_thread(thread.join, 10)
        await server.stop()
        await queue.close()
        if api_queue is not queue:
            await api_queue.close()
        bus.close()


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
    try:
        cat = load_catalogue(catalogue)
        config = load_dispatch_config(dispatch_config)
        cameras = camera or cat.camera_ids()
        unknown = sorted(set(cameras) - set(cat.camera_ids()))
        if unknown:
            raise ConfigError(str(catalogue_path(catalogue)), [f"unknown camera ids {unknown}"])
        if variant not in VARIANTS:
            raise typer.BadParameter(f"variant must be one of {', '.join(VARIANTS)}")
        settings = RunSettings(
            cameras=cameras,
            variant=variant,
            resolution_wh=parse_resolution(resolution),
            segment_s=segment_s,
            evidence_dir=evidence_dir,
        )
        pools = ControlCenterConfig().redis_pools
        the_bus, the_queue = open_bus(bus), open_queue(queue, pool_size=pools.writer)
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
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    try:
        asyncio.run(
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


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
