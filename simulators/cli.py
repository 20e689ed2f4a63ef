"""``citybrain simulate``: record simulated camera footage with ground truth, or stream it."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from prometheus_client import CollectorRegistry, start_http_server
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from services.common import console
from services.common.bus import Bus, BusError, open_bus
from services.common.bus.kafka import KafkaBus
from services.common.config.catalogue import load_catalogue
from services.common.config.fleet_order import load_fleet_order
from services.common.config.loader import ConfigError
from services.common.console import CatalogueOption, err, fail, parse_resolution
from services.detector.sources import register_scene_source
from simulators.feed import (
    SimulatedCamera,
    UnknownCameraError,
    load_camera_setup,
    publish_frames,
    simulate_camera,
    write_recording,
)
from simulators.live import (
    CHUNK_S,
    RENDER_AHEAD_CHUNK_S,
    LiveFeedMetrics,
    LiveFeedSettings,
    LiveFeedSummary,
    jsonl_drop_sink,
    jsonl_truth_sink,
    run_live_feed,
)
from simulators.options import simulation_options
from simulators.render import VARIANTS
from simulators.shares import KafkaCameraShares, follow_shares
from simulators.source import open_simulator

# A replica's new share starts this long after it is taken on: about twice what simulating a
# chunk of eight cameras' traffic takes on one core.
SHARE_START_LEAD_MS = 2_000


SimulatorConfigOption = Annotated[
    Path | None,
    typer.Option(
        help="Simulator traffic settings; default: simulator.yaml in the config directory."
    ),
]


# Typer maps each parameter to an option, so a command's signature is its whole interface.
def simulate(  # noqa: PLR0917
    camera: Annotated[
        str | None, typer.Option("--camera", "-c", help="Camera id from cities.yaml.")
    ] = None,
    all_cameras: Annotated[
        bool, typer.Option("--all", help="Every catalogued camera (OUT/<camera_id>/...).")
    ] = False,
    seconds: Annotated[
        float, typer.Option(min=0.1, max=86400, help="Length of the footage.")
    ] = 60.0,
    out: Annotated[
        Path | None,
        typer.Option(help="Write video.avi, truth.jsonl and scene.yaml here."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(help="Stream JPEG frames to this bus instead, e.g. kafka://127.0.0.1:9092."),
    ] = None,
    variant: Annotated[str, typer.Option(help=f"The look: {', '.join(VARIANTS)}.")] = "day",
    seed: Annotated[
        int, typer.Option(help="Traffic seed; the same seed gives the same footage.")
    ] = 0,
    resolution: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT.")] = "1280x720",
    realtime: Annotated[
        bool, typer.Option(help="Pace frames at the camera's fps instead of as fast as possible.")
    ] = False,
    faults: Annotated[
        bool, typer.Option(help="Drop or corrupt about 2% of frames (marked in the truth).")
    ] = False,
    catalogue: CatalogueOption = None,
    config: SimulatorConfigOption = None,
) -> None:
    if (camera is None) == (not all_cameras):
        raise fail("give exactly one of --camera ID or --all")
    if (out is None) == (to is None):
        raise fail("give exactly one of --out DIR or --to kafka://HOST:PORT")
    options = simulation_options(
        cameras=None if all_cameras else [camera or ""],
        variant=variant,
        resolution=resolution,
        catalogue_path=catalogue,
    )
    try:
        cameras = [
            simulate_camera(
                camera_id,
                seconds=seconds,
                seed=seed,
                variant=options.variant,
                resolution_wh=options.resolution_wh,
                faults=faults,
                catalogue_path=catalogue,
                simulator_config_path=config,
            )
            for camera_id in options.camera_ids
        ]
    except (UnknownCameraError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if out is not None:
        _record(cameras, out, per_camera=all_cameras)
    else:
        _stream(cameras, to or "", realtime=realtime)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    )


def _record(cameras: list[SimulatedCamera], out: Path, *, per_camera: bool) -> None:
    targets = [out / cam.camera_id if per_camera else out for cam in cameras]
    with _progress() as progress:
        for cam, target in zip(cameras, targets, strict=True):
            task = progress.add_task(cam.camera_id, total=cam.n_frames)

            def advance(task_id: TaskID = task) -> None:
                progress.advance(task_id)

            try:
                write_recording(cam, target, on_frame=advance)
            except OSError as exc:
                raise fail(f"{target}: {exc}") from None
    for cam, target in zip(cameras, targets, strict=True):
        kinds = ", ".join(f"{v.type.value}@{v.frame}" for v in cam.truth) or "none"
        console.out.print(
            f"[green]ok[/green] {escape(str(target))}: {cam.n_frames} frames, violations: {kinds}"
        )


def _stream(cameras: list[SimulatedCamera], url: str, *, realtime: bool) -> None:
    try:
        bus = open_bus(url)
    except ValueError as exc:
        raise fail(f"--to: {exc}") from None
    total = sum(cam.n_frames for cam in cameras)
    try:
        with _progress() as progress:
            task = progress.add_task(f"frames → {url}", total=total)
            count = publish_frames(
                bus, cameras, realtime=realtime, on_frame=lambda _f: progress.advance(task)
            )
    except BusError as exc:
        raise fail(f"--to {url}: {exc}") from None
    finally:
        bus.close()
    console.out.print(f"[green]ok[/green] published {count} frames to {escape(url)}")


_HELP = (
    "Simulate fixed traffic cameras in Wuzhen and Hangzhou, with exact ground truth.\n\n"
    "Writes OUT/video.avi (MJPG), OUT/truth.jsonl (every violation and every frame's vehicle "
    "boxes) and OUT/scene.yaml (the scene scaled to --resolution); with --all, one folder per "
    "camera under OUT. With --to, streams SECONDS of JPEG frames to the Kafka `frames` topic "
    "instead. A bad camera id, config file or option exits with code 2."
)


def simulate_live(  # noqa: PLR0917
    to: Annotated[str, typer.Option(help="The bus the frames go to: kafka://HOST:PORT.")],
    cameras: Annotated[
        list[str] | None,
        typer.Option("--camera", "-c", help="Camera id; repeat for more cameras."),
    ] = None,
    all_cameras: Annotated[
        bool, typer.Option("--all", help="Every catalogued camera instead of --camera.")
    ] = False,
    share_group: Annotated[
        str | None,
        typer.Option(
            help="Stream only this replica's share of the cameras: the replicas that give the "
            "same group split them through a Kafka consumer group, and take over a dead "
            "one's within its session timeout. Scale by starting more replicas.",
        ),
    ] = None,
    seconds: Annotated[
        float, typer.Option(min=0, help="How long to stream; 0 streams until SIGTERM.")
    ] = 0.0,
    start_ts_ms: Annotated[
        int,
        typer.Option(
            help="Wall-clock time of frame 0 (Unix ms); 0 means now. The feed waits "
            "for it, so several feeds can start together."
        ),
    ] = 0,
    resolution: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT.")] = "1280x720",
    truth: Annotated[
        Path | None, typer.Option(help="Append each ground-truth violation here (JSONL).")
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus /metrics on PORT (0: off).")
    ] = 0,
    metrics_host: Annotated[
        str, typer.Option(help="The address /metrics binds (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Traffic seed of the first chunk.")] = 0,
    fleet_order: Annotated[
        Path | None,
        typer.Option(
            help="YAML `cameras: [ID, ...]` listing the whole fleet (`citybrain stack up` "
            "writes one): camera i of the list goes to `frames` partition i mod the partition "
            "count, so partitions, and the detectors sharing them, get equal numbers of "
            "cameras. Without it, --all deals the catalogue's cameras in its order, and "
            "--camera leaves it to the camera id's hash, which is lumpy for a few dozen "
            "cameras.",
        ),
    ] = None,
    render_ahead: Annotated[
        bool,
        typer.Option(
            help="Draw and encode each minute of frames before it streams (a load "
            "generator's mode): while streaming, the feed only publishes, and leaves the "
            "cores to the system under load. Holds about 850 MB per 30 cameras at 1280x720 "
            "and 5 fps; citybrain_camera_feed_ready turns 1 once the first minute is ready.",
        ),
    ] = False,
    catalogue: CatalogueOption = None,
    config: SimulatorConfigOption = None,
) -> None:
    resolution_wh = parse_resolution(resolution)
    if bool(cameras) == all_cameras:
        raise fail("give --camera ID (repeatable) or --all")
    try:
        camera_ids = load_catalogue(catalogue).camera_ids() if all_cameras else list(cameras or ())
        fps = {
            load_camera_setup(c, catalogue_path=catalogue, simulator_config_path=config).scene.fps
            for c in camera_ids
        }
        slots = fleet_slots(camera_ids, fleet_order=fleet_order, whole_catalogue=all_cameras)
    except (UnknownCameraError, ConfigError) as exc:
        raise fail(str(exc)) from None
    if fleet_order and (unlisted := [c for c in camera_ids if c not in slots]):
        raise fail(f"--fleet-order {fleet_order}: does not list {', '.join(unlisted)}")
    if len(fps) != 1:
        raise fail(f"--camera: the cameras of one feed must share a frame rate, got {sorted(fps)}")
    try:
        bus = open_bus(to)
    except ValueError as exc:
        raise fail(f"--to: {exc}") from None
    registry = CollectorRegistry()
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host, registry=registry)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    settings = LiveFeedSettings(
        camera_ids=tuple(camera_ids),
        catalogue_path=catalogue,
        simulator_config_path=config,
        resolution_wh=resolution_wh,
        fps=fps.pop(),
        start_ts_ms=start_ts_ms or int(time.time() * 1000),
        seconds=seconds or None,
        seed=seed,
        slots=slots,
        render_ahead=render_ahead,
        chunk_s=RENDER_AHEAD_CHUNK_S if render_ahead else CHUNK_S,
    )
    metrics = LiveFeedMetrics.create(registry)
    total = LiveFeedSummary()
    with contextlib.ExitStack() as stack:
        handle = stack.enter_context(truth.open("a", encoding="utf-8")) if truth else None

        def run_feed(owned: list[str], until: threading.Event) -> None:
            # A share taken on starts shortly: its first chunk of traffic is simulated while
            # the feed waits for frame 0, instead of its first frames being late and skipped.
            start_ms = (
                int(time.time() * 1000) + SHARE_START_LEAD_MS
                if share_group
                else settings.start_ts_ms
            )
            summary = run_live_feed(
                bus,
                replace(settings, camera_ids=tuple(owned), start_ts_ms=start_ms),
                metrics=metrics,
                stop=until,
                truth_sink=jsonl_truth_sink(handle) if handle else (lambda _v: None),
                drop_sink=jsonl_drop_sink(handle) if handle else None,
            )
            total.published += summary.published
            total.dropped_late += summary.dropped_late
            total.violations += summary.violations

        try:
            if share_group is None:
                run_feed(camera_ids, stop)
            else:
                shares = _join_shares(bus, camera_ids, share_group)
                try:
                    follow_shares(shares, run_feed, stop=stop)
                finally:
                    shares.close()
        except BusError as exc:
            raise fail(f"--to {to}: {exc}") from None
        finally:
            bus.close()
    console.out.print(
        f"[green]ok[/green] {len(camera_ids)} cameras: published {total.published} frames, "
        f"dropped {total.dropped_late} late, {total.violations} violations in the truth"
    )


def fleet_slots(
    camera_ids: list[str], *, fleet_order: Path | None, whole_catalogue: bool
) -> dict[str, int]:
    """Each camera's slot in its fleet (the ``frames`` partition it goes to, modulo their
    count): from ``--fleet-order``; with ``--all`` and no order, the catalogue is the fleet
    and its order deals the cameras (compose's simulators); otherwise none, and the camera
    id's hash picks. Raises ``ConfigError`` for a bad order file.

    >>> fleet_slots(["a", "b"], fleet_order=None, whole_catalogue=True)
    {'a': 0, 'b': 1}
    >>> fleet_slots(["a", "b"], fleet_order=None, whole_catalogue=False)
    {}
    """
    if fleet_order is not None:
        return load_fleet_order(fleet_order).slots()
    if whole_catalogue:
        return {camera: slot for slot, camera in enumerate(camera_ids)}
    return {}


def _join_shares(bus: Bus, cameras: list[str], group_id: str) -> KafkaCameraShares:
    if not isinstance(bus, KafkaBus):
        raise fail("--share-group needs --to kafka://HOST:PORT")
    return KafkaCameraShares(bus, camera_ids=cameras, group_id=group_id)


_LIVE_HELP = (
    "Stream simulated cameras live to Kafka: each frame is published at its capture time "
    "(Unix ms in its ts_ms header), traffic is simulated a chunk at a time so the feed can run "
    "indefinitely, and frames more than a second late are skipped and counted "
    '(citybrain_camera_frames_dropped_total{reason="late"}). `citybrain stack up` and '
    "`citybrain loadtest` run it; --truth collects the ground truth they reconcile against."
)


def register(app: typer.Typer) -> None:
    app.command("simulate", help=_HELP)(simulate)
    app.command("simulate-live", help=_LIVE_HELP)(simulate_live)
    register_scene_source("sim", open_simulator)
