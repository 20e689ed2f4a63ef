"""``citybrain simulate``: record simulated camera footage with ground truth, or stream it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from services.common import console
from services.common.bus import BusError, open_bus
from services.common.config.catalogue import load_catalogue
from services.common.config.loader import ConfigError
from services.common.console import CatalogueOption, err, fail, parse_resolution
from simulators.feed import (
    SimulatedCamera,
    UnknownCameraError,
    publish_frames,
    simulate_camera,
    write_recording,
)
from simulators.render import VARIANTS


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
    config: Annotated[
        Path | None,
        typer.Option(
            help="Simulator traffic settings; default: simulator.yaml in the config directory."
        ),
    ] = None,
) -> None:
    if (camera is None) == (not all_cameras):
        raise fail("give exactly one of --camera ID or --all")
    if (out is None) == (to is None):
        raise fail("give exactly one of --out DIR or --to kafka://HOST:PORT")
    if variant not in VARIANTS:
        raise fail(f"--variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    resolution_wh = parse_resolution(resolution)
    try:
        camera_ids = load_catalogue(catalogue).camera_ids() if all_cameras else [camera or ""]
        cameras = [
            simulate_camera(
                camera_id,
                seconds=seconds,
                seed=seed,
                variant=variant,
                resolution_wh=resolution_wh,
                faults=faults,
                catalogue_path=catalogue,
                simulator_config_path=config,
            )
            for camera_id in camera_ids
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
        console.out.print(f"[green]ok[/green] {target}: {cam.n_frames} frames, violations: {kinds}")


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
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(code=1) from None
    finally:
        bus.close()
    console.out.print(f"[green]ok[/green] published {count} frames to {url}")


_HELP = (
    "Simulate fixed traffic cameras in Wuzhen and Hangzhou, with exact ground truth.\n\n"
    "Writes OUT/video.avi (MJPG), OUT/truth.jsonl (every violation and every frame's vehicle "
    "boxes) and OUT/scene.yaml (the scene scaled to --resolution); with --all, one folder per "
    "camera under OUT. With --to, streams SECONDS of JPEG frames to the Kafka `frames` topic "
    "instead. A bad camera id, config file or option exits with code 2."
)


def register(app: typer.Typer) -> None:
    app.command("simulate", help=_HELP)(simulate)
