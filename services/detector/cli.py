"""``citybrain detect``, ``replay`` and ``eval``: wiring of sources, pipelines and sinks."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import cv2
import typer
from prometheus_client import CollectorRegistry, start_http_server
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.common.bus import open_bus
from services.common.config.loader import ConfigError, load_model
from services.common.config.paths import SCENES_DIR, config_path
from services.common.config.scene import SceneConfig
from services.common.console import err, fail, out
from services.detector.evaluate import DEFAULT_FPS, evaluate, load_events, load_truth
from services.detector.evidence import EvidenceWriter
from services.detector.metrics import DetectorMetrics
from services.detector.replay import replay
from services.detector.sources import (
    KafkaFrameSource,
    SimulatorSource,
    SourceItem,
    VideoFileSource,
    VideoOpenError,
)
from services.detector.worker import (
    DetectorWorker,
    EventSink,
    SceneDirectory,
    bus_sink,
    interleave,
    jsonl_sink,
)


def _load_scene(path: Path) -> SceneConfig:
    try:
        return load_model(SceneConfig, path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def replay_command(
    video: Annotated[Path, typer.Argument(help="Recorded video file (MJPG AVI is fastest).")],
    *,
    scene_path: Annotated[Path, typer.Option("--scene", help="The camera's scene YAML.")],
    events_path: Annotated[Path, typer.Option("--events", help="Write events here (JSONL).")],
    snapshots: Annotated[
        Path | None, typer.Option("--snapshots", help="Write evidence JPEGs under this dir.")
    ] = None,
    bus_url: Annotated[
        str | None, typer.Option("--bus", help="Also publish events: kafka://HOST:PORT.")
    ] = None,
    start_ts_ms: Annotated[
        int | None,
        typer.Option(
            help="Capture time of frame 0 (Unix ms). Default: a fixed epoch plus a hash of "
            "the file, so replaying a file always gives the same violation ids."
        ),
    ] = None,
) -> None:
    """Run the detectors over VIDEO as fast as possible; write one event per line."""
    scene = _load_scene(scene_path)
    cv2.setNumThreads(1)
    try:
        source = VideoFileSource(
            video,
            camera_id=scene.camera_id,
            fps=scene.fps,
            start_ts_ms=start_ts_ms,
        )
    except VideoOpenError as exc:
        raise fail(str(exc)) from None
    bus = open_bus(bus_url) if bus_url else None
    events_path.parent.mkdir(parents=True, exist_ok=True)
    with events_path.open("w", encoding="utf-8") as handle, _progress() as progress:
        sinks: list[EventSink] = [jsonl_sink(handle)]
        if bus is not None:
            sinks.append(bus_sink(bus))
        task = progress.add_task(video.name, total=source.frame_count or None)
        summary = replay(
            source,
            scene=scene,
            sinks=sinks,
            evidence=EvidenceWriter(snapshots) if snapshots else None,
            on_item=lambda: progress.advance(task),
        )
    if bus is not None:
        bus.flush()
        bus.close()
    stats = summary.stats
    out.print(
        f"frames read: {stats.frames_read}  processed: {stats.frames_processed}  "
        f"dropped: {stats.frames_dropped} {dict(stats.dropped) or ''}".rstrip()
    )
    out.print(f"fps: {summary.fps:.1f} ({summary.seconds:.2f} s)")
    out.print(f"events: {sum(stats.events.values())} {dict(stats.events)} -> {events_path}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames"),
        TimeElapsedColumn(),
        console=err,
    )


def detect_command(
    *,
    sources: Annotated[
        list[str],
        typer.Option(
            "--source",
            help="sim:CAMERA_ID, video:PATH (with --scene) or kafka://HOST:PORT (the frames "
            "topic). Repeat for more cameras.",
        ),
    ],
    bus_url: Annotated[str, typer.Option("--bus", help="kafka://HOST:PORT or memory://")],
    scene_path: Annotated[
        Path | None, typer.Option("--scene", help="Scene YAML for a video: source.")
    ] = None,
    scenes_dir: Annotated[
        Path | None,
        typer.Option(
            help="Scenes of Kafka-fed cameras: DIR/<camera_id>.yaml; default: scenes/ in the "
            "config directory."
        ),
    ] = None,
    snapshots: Annotated[Path, typer.Option(help="Evidence snapshot directory.")] = Path(
        "evidence"
    ),
    sim_seconds: Annotated[float, typer.Option(help="Length of each sim: feed.")] = 600.0,
    variant: Annotated[str, typer.Option(help="Simulator variant for sim: feeds.")] = "day",
    metrics_port: Annotated[
        int, typer.Option(help="Serve Prometheus /metrics here (0: off).")
    ] = 9102,
    group_id: Annotated[str, typer.Option(help="Consumer group on the frames topic.")] = (
        "citybrain-detector"
    ),
) -> None:
    """Detect violations in one or more camera feeds and publish them on the bus."""
    cv2.setNumThreads(1)
    stop = threading.Event()
    bus = open_bus(bus_url)
    scenes: dict[str, SceneConfig] = {}
    feeds: list[Iterable[SourceItem]] = []
    for spec in sources:
        if spec.startswith("sim:"):
            sim = SimulatorSource(spec[4:], seconds=sim_seconds, variant=variant)
            scenes[sim.scene.camera_id] = sim.scene
            feeds.append(sim)
        elif spec.startswith("video:"):
            if scene_path is None:
                raise fail("--scene is required with a video: source")
            scene = scenes.setdefault(_load_scene(scene_path).camera_id, _load_scene(scene_path))
            path = Path(spec[6:])
            try:
                feeds.append(VideoFileSource(path, camera_id=scene.camera_id, fps=scene.fps))
            except VideoOpenError as exc:
                raise fail(str(exc)) from None
        elif spec.startswith("kafka://"):
            feeds.append(KafkaFrameSource(open_bus(spec), group_id=group_id, stop=stop))
        else:
            raise fail(f"--source {spec!r}: expected sim:CAMERA, video:PATH or kafka://HOST:PORT")

    registry = CollectorRegistry()
    if metrics_port:
        start_http_server(metrics_port, registry=registry)
    directory = SceneDirectory(scenes_dir or config_path(SCENES_DIR))
    worker = DetectorWorker(
        scenes=lambda camera_id: scenes.get(camera_id) or directory(camera_id),
        sinks=[bus_sink(bus)],
        metrics=DetectorMetrics.create(registry),
        evidence=EvidenceWriter(snapshots),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for item in interleave(feeds):
        worker.handle(item)
        if stop.is_set():
            break
    bus.flush()
    bus.close()
    stats = worker.stats
    out.print(
        f"frames read: {stats.frames_read}  processed: {stats.frames_processed}  "
        f"dropped: {stats.frames_dropped}  events: {dict(stats.events)}"
    )


def eval_command(
    *,
    truth_path: Annotated[Path, typer.Option("--truth", help="Ground truth JSONL.")],
    events_path: Annotated[Path, typer.Option("--events", help="Detected events JSONL.")],
    fps: Annotated[
        float | None,
        typer.Option(help="Frame rate; default: measured from the truth's frame records."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = (
        False
    ),
) -> None:
    """Precision, recall and timing error per violation type."""
    try:
        truth, truth_fps = load_truth(truth_path)
        detected = load_events(events_path)
    except (OSError, ValueError, KeyError) as exc:
        raise fail(f"{exc}") from None
    scores = evaluate(truth, detected, fps=fps or truth_fps or DEFAULT_FPS)
    if as_json:
        out.print(json.dumps([s.to_dict() for s in scores.values()]))
        return
    table = Table("type", "truth", "detected", "matched", "precision", "recall", "timing error")
    for score in scores.values():
        timing = (
            f"mean {score.mean_abs_error_s:.2f} s, max {score.max_abs_error_s:.2f} s"
            if score.mean_abs_error_s is not None and score.max_abs_error_s is not None
            else "-"
        )
        table.add_row(
            score.type.value,
            str(score.truth),
            str(score.detected),
            str(score.matched),
            f"{score.precision:.3f}",
            f"{score.recall:.3f}",
            timing,
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_command)
    app.command("replay")(replay_command)
    app.command("eval")(eval_command)
