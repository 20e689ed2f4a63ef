"""``citybrain simulate --share-group``: the live simulator service, wired to Kafka.

It joins the share group, streams the cameras Kafka gives it at their frame rates, follows
every rebalance within a second, serves its metrics, and leaves the group on SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import typer
from prometheus_client import CollectorRegistry, start_http_server

from services.common.bus import BusError
from services.common.bus.kafka import KafkaBus
from services.common.console import err, out
from services.common.frames import FRAMES_TOPIC
from simulators.feed import SimulatedCamera, load_camera_setup, simulate_camera
from simulators.live import LiveFeed
from simulators.metrics import SimulatorMetrics
from simulators.shares import KafkaCameraShares

log = logging.getLogger(__name__)

# How often the replica asks the group for its share (and so how soon it follows a rebalance).
SHARE_CHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """What every live camera's footage is made of."""

    seconds: float
    seed: int
    variant: str
    resolution_wh: tuple[int, int]
    catalogue_path: Path
    simulator_config_path: Path

    def check(self, camera_ids: Sequence[str]) -> None:
        """Load every camera's setup once, so a bad id or config fails before joining."""
        for camera_id in camera_ids:
            load_camera_setup(
                camera_id,
                catalogue_path=self.catalogue_path,
                simulator_config_path=self.simulator_config_path,
            )

    def camera(self, camera_id: str, segment: int, start_ts_ms: int) -> SimulatedCamera:
        return simulate_camera(
            camera_id,
            seconds=self.seconds,
            seed=self.seed + segment,
            variant=self.variant,
            resolution_wh=self.resolution_wh,
            start_ts_ms=start_ts_ms,
            catalogue_path=self.catalogue_path,
            simulator_config_path=self.simulator_config_path,
        )


def _wall_ms() -> int:
    return int(time.time() * 1000)


def stream_live(
    camera_ids: Sequence[str],
    url: str,
    *,
    settings: LiveSettings,
    group_id: str,
    metrics_addr: tuple[str, int],
) -> None:
    """Stream this replica's share of ``camera_ids`` to ``url`` until SIGTERM or SIGINT.

    ``metrics_addr`` is the (host, port) /metrics is served on; port 0 serves none.
    """
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    registry = CollectorRegistry()
    metrics = SimulatorMetrics.create(registry)
    host, port = metrics_addr
    if port:
        start_http_server(port, addr=host, registry=registry)
    bus = KafkaBus(bootstrap_servers=url.removeprefix("kafka://"), client_id="citybrain-simulator")
    published = 0
    try:
        bus.ensure_topics([FRAMES_TOPIC])
        shares = KafkaCameraShares(bus, camera_ids=camera_ids, group_id=group_id)
        feed = LiveFeed(settings.camera)
        next_check = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() >= next_check:
                    owned = shares.owned()
                    if owned != feed.owned:
                        log.info("share of group %s: %s", group_id, ", ".join(owned) or "none")
                    feed.own(owned, now_ms=_wall_ms())
                    metrics.cameras.set(len(owned))
                    next_check = time.monotonic() + SHARE_CHECK_S
                due = feed.take_due(now_ms=_wall_ms())
                for frame in due.frames:
                    assert frame.jpeg is not None
                    bus.publish(
                        FRAMES_TOPIC.name,
                        frame.jpeg,
                        key=frame.camera_id.encode(),
                        headers=frame.headers(),
                    )
                    metrics.frames_published.labels(camera_id=frame.camera_id).inc()
                published += len(due.frames)
                for camera_id, count in due.skipped.items():
                    metrics.frames_skipped.labels(camera_id=camera_id).inc(count)
                next_due = feed.next_due_ms()
                wait_s = SHARE_CHECK_S if next_due is None else (next_due - _wall_ms()) / 1000
                stop.wait(min(max(wait_s, 0.0), max(next_check - time.monotonic(), 0.0)))
        finally:
            shares.close()
        bus.flush()
    except BusError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(code=1) from None
    finally:
        bus.close()
    out.print(f"[green]ok[/green] published {published} frames to {url} (group {group_id})")
