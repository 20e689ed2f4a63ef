"""``citybrain detect``, ``replay`` and ``eval``: wiring of sources, pipelines and sinks."""

from __future__ import annotations

import itertools
import json
import signal
import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO

import cv2
import typer
from prometheus_client import CollectorRegistry, start_http_server
from rich.table import Table

from services.common.bus import Bus, BusError, open_bus
from services.common.bus.kafka import KafkaBus
from services.common.config.loader import ConfigError, load_model
from services.common.config.paths import SCENES_DIR, config_path
from services.common.config.scene import SceneConfig
from services.common.console import fail, frame_progress, out
from services.common.events import VIOLATIONS_TOPIC
from services.common.frames import Frame
from services.common.lag import ConsumerLagGauge
from services.detector.annotate import AnnotatedVideoWriter, AnnotateError
from services.detector.decode import CorruptFrameError, decode_bgr
from services.detector.evaluate import DEFAULT_FPS, evaluate, load_events, load_truth
from services.detector.evidence import EvidenceWriter
from services.detector.metrics import DetectorMetrics
from services.detector.recorder import EvidenceRecorder, RecorderSettings
from services.detector.replay import replay
from services.detector.sources import (
    KafkaCameraHistory,
    KafkaFrameSource,
    SceneSourceOptions,
    SourceItem,
    VideoFileSource,
    VideoOpenError,
    open_scene_source,
)
from services.detector.worker import (
    DetectorWorker,
    EventSink,
    FrameSink,
    SceneDirectory,
    bus_sink,
    interleave,
    jsonl_sink,
    trace_sink,
)


def _load_scene(path: Path) -> SceneConfig:
    try:
        return load_model(SceneConfig, path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@dataclass(frozen=True, slots=True)
class _ReplayInput:
    """What ``citybrain replay`` reads: its frames, their size, and what to call them."""

    items: Iterable[SourceItem]
    frame_wh: tuple[int, int]
    label: str
    frame_count: int | None = None
    # What the read found besides frames (an edit list, a truncated file), once it is done.
    notes: Callable[[], list[str]] = list


def _replay_input(
    video: str,
    *,
    scene: SceneConfig,
    scene_path: Path,
    start_ts_ms: int | None,
    since_ts_ms: int | None,
    until_ts_ms: int | None,
) -> _ReplayInput:
    """The video file, or the scene's camera's frames in Kafka; exits 2 on options that do
    not go with it, an unreadable file, no frames, or a scene that does not fit them."""
    if not video.startswith("kafka://"):
        if since_ts_ms is not None or until_ts_ms is not None:
            raise fail("--since-ts-ms and --until-ts-ms pick frames from Kafka, not from a file")
        try:
            source = VideoFileSource(
                Path(video), camera_id=scene.camera_id, fps=scene.fps, start_ts_ms=start_ts_ms
            )
        except VideoOpenError as exc:
            raise fail(str(exc)) from None
        _check_fit(scene, scene_path, source.resolution_wh)
        return _ReplayInput(
            items=source,
            frame_wh=source.resolution_wh,
            label=Path(video).name,
            frame_count=source.frame_count,
            notes=lambda: source.report.notes(Path(video)),
        )
    if since_ts_ms is None or until_ts_ms is None:
        raise fail(
            f"{video}: give --since-ts-ms and --until-ts-ms, the capture times (Unix ms) of "
            "the frames to replay"
        )
    if start_ts_ms is not None:
        raise fail("--start-ts-ms times a video file; frames from Kafka carry their own")
    try:
        bus = open_bus(video)
        assert isinstance(bus, KafkaBus)  # a kafka:// URL opens one
        items = iter(
            KafkaCameraHistory(
                bus, camera_id=scene.camera_id, since_ms=since_ts_ms, until_ms=until_ts_ms
            )
        )
        # The first frame tells the frames' size (a stack's may be smaller than its scene).
        head: list[SourceItem] = []
        first: Frame | None = None
        for item in items:
            if isinstance(item, Frame):
                first = item
                break
            head.append(item)
    except (ValueError, BusError) as exc:
        raise fail(f"{video}: {exc}") from None
    if first is None:
        raise fail(
            f"{video}: no frames of {scene.camera_id} captured between {since_ts_ms} and "
            f"{until_ts_ms} (the topic keeps frames for its retention time)"
        )
    try:
        image = decode_bgr(first)
    except CorruptFrameError as exc:
        raise fail(f"{video}: the first frame of {scene.camera_id}: {exc}") from None
    frame_wh = (image.shape[1], image.shape[0])
    _check_fit(scene, scene_path, frame_wh)
    return _ReplayInput(
        items=itertools.chain(head, [first], items),
        frame_wh=frame_wh,
        label=f"{scene.camera_id} from Kafka",
    )


def replay_command(
    video: Annotated[
        str,
        typer.Argument(
            help="Recorded video file (MP4, MOV, MKV or AVI; MJPG is fastest), or "
            "kafka://HOST:PORT to replay the scene's camera's frames from the frames topic "
            "(with --since-ts-ms and --until-ts-ms): what a stack's detectors were fed."
        ),
    ],
    *,
    scene_path: Annotated[Path, typer.Option("--scene", help="The camera's scene YAML.")],
    events_path: Annotated[Path, typer.Option("--events", help="Write events here (JSONL).")],
    snapshots: Annotated[
        Path | None,
        typer.Option(
            "--snapshots",
            help="Write evidence under this dir: the vehicle crop and the full frame, and a "
            "panel sheet per violation (red light: before, at and past the line; parking: "
            "first seen in the zone and at the violation), named in the event's "
            "evidence_panels.",
        ),
    ] = None,
    bus_url: Annotated[
        str | None, typer.Option("--bus", help="Also publish events: kafka://HOST:PORT.")
    ] = None,
    trace_path: Annotated[
        Path | None,
        typer.Option(
            "--trace",
            help="Write one JSON line per frame read: frame, ts_ms, the signal state the "
            "detector holds, its tracks (id, bbox_xywh, stationary) and the ids of the "
            "events raised at that frame.",
        ),
    ] = None,
    annotate_path: Annotated[
        Path | None,
        typer.Option(
            "--annotate",
            help="Write the video as the detector saw it (.avi: MJPG, .mp4: MPEG-4), one "
            "frame per frame read: zones, stop line, signal, tracks with ids, violations.",
        ),
    ] = None,
    start_ts_ms: Annotated[
        int | None,
        typer.Option(
            help="Capture time of frame 0 (Unix ms). Default: a fixed epoch plus a hash of "
            "the file, so replaying a file always gives the same violation ids. Later "
            "frames are timed by the video's own timestamps."
        ),
    ] = None,
    clip_s: Annotated[float, _CLIP_OPTION] = 0.0,
    since_ts_ms: Annotated[
        int | None,
        typer.Option(
            help="From Kafka: the capture time (Unix ms) of the first frame to replay, e.g. a "
            "load test report's start_ms (where the detectors' pipelines started)."
        ),
    ] = None,
    until_ts_ms: Annotated[
        int | None,
        typer.Option(help="From Kafka: the capture time (Unix ms) of the last frame to replay."),
    ] = None,
) -> None:
    """Run the detectors over VIDEO as fast as possible; write one event per line."""
    scene = _load_scene(scene_path)
    cv2.setNumThreads(1)
    source = _replay_input(
        video,
        scene=scene,
        scene_path=scene_path,
        start_ts_ms=start_ts_ms,
        since_ts_ms=since_ts_ms,
        until_ts_ms=until_ts_ms,
    )
    bus = _events_bus(bus_url) if bus_url else None
    evidence_dir = _writable_dir("--snapshots", snapshots) if snapshots else None
    try:
        with ExitStack() as stack:
            sinks: list[EventSink] = [jsonl_sink(_open_output(stack, events_path, "--events"))]
            if bus is not None:
                sinks.append(bus_sink(bus))
            frame_sinks: list[FrameSink] = []
            if trace_path is not None:
                frame_sinks.append(trace_sink(_open_output(stack, trace_path, "--trace")))
            annotated: AnnotatedVideoWriter | None = None
            if annotate_path is not None:
                try:
                    annotated = AnnotatedVideoWriter(
                        annotate_path, scene=scene, fps=scene.fps, frame_wh=source.frame_wh
                    )
                except AnnotateError as exc:
                    raise fail(str(exc)) from None
                stack.callback(annotated.close)
                frame_sinks.append(annotated)
            progress = stack.enter_context(frame_progress())
            task = progress.add_task(source.label, total=source.frame_count or None)
            summary = replay(
                source.items,
                scene=scene,
                sinks=sinks,
                evidence=EvidenceWriter(evidence_dir) if evidence_dir else None,
                recorder=_recorder(evidence_dir, clip_s=clip_s) if evidence_dir else None,
                frame_sinks=frame_sinks,
                on_item=lambda: progress.advance(task),
            )
    except OSError as exc:
        # Outputs are written line by line, so a full disk shows at the first event or frame.
        outputs = f"--events {events_path}" + (f" or --trace {trace_path}" if trace_path else "")
        raise fail(f"{outputs}: {exc.strerror or exc}") from None
    except BusError as exc:  # Kafka went away while its frames were read
        raise fail(f"{video}: {exc}") from None
    if bus is not None:
        bus.flush()
        bus.close()
    stats = summary.stats
    for note in source.notes():
        out.print(f"note: {note}", markup=False)
    out.print(
        f"frames read: {stats.frames_read}  processed: {stats.frames_processed}  "
        f"dropped: {stats.frames_dropped} {dict(stats.dropped) or ''}".rstrip()
    )
    out.print(f"fps: {summary.fps:.1f} ({summary.seconds:.2f} s)")
    out.print(
        f"events: {sum(stats.events.values())} {dict(stats.events)} -> {events_path}", markup=False
    )
    if trace_path is not None:
        out.print(f"trace: {stats.frames_read} lines -> {trace_path}", markup=False)
    if annotated is not None:
        out.print(f"annotated: {annotated.frames_written} frames -> {annotate_path}", markup=False)


def _writable_dir(option: str, path: Path, *, shown: Path | None = None) -> Path:
    """``path``, created if need be; one that cannot be a directory fails the command, naming
    ``option`` and ``shown`` (the path as given)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        # mkdir says "File exists" or "Not a directory" of a parent that is a file: say which.
        file = next(p for p in (path, *path.parents) if p.exists() and not p.is_dir())
        raise fail(f"{option} {shown or path}: {file} is a file, not a directory") from None
    except OSError as exc:
        raise fail(f"{option} {shown or path}: {exc.strerror or exc}") from None
    return path


def _events_bus(url: str) -> Bus:
    """The bus events are published on, checked to answer before any work is done."""
    try:
        bus = open_bus(url)
        bus.ensure_topics([VIOLATIONS_TOPIC])
    except (ValueError, BusError) as exc:
        raise fail(f"--bus {url}: {exc}") from None
    return bus


_CLIP_OPTION = typer.Option(
    "--evidence-clip-s",
    min=0.0,
    max=30.0,
    help="With the evidence: also an MJPG clip of this many seconds either side of each "
    "violation, named in the event's evidence_clip (0: none).",
)


def _recorder(root: Path, *, clip_s: float) -> EvidenceRecorder:
    return EvidenceRecorder(root, settings=RecorderSettings(clip_s=clip_s))


def _check_fit(scene: SceneConfig, scene_path: Path, frame_wh: tuple[int, int]) -> None:
    """Exit 2 when the scene's geometry cannot be the video's (a light or zone off-frame)."""
    problem = scene.misfit(frame_wh)
    if problem is not None:
        raise fail(f"{scene_path} does not fit the video: {problem}")


def _open_output(stack: ExitStack, path: Path, option: str) -> TextIO:
    """``path`` opened for writing before any work is done, line-buffered, or exit 2 naming
    the option (a directory, a parent that is a file, no permission)."""
    _writable_dir(option, path.parent, shown=path)
    try:
        return stack.enter_context(path.open("w", encoding="utf-8", buffering=1))
    except OSError as exc:
        raise fail(f"{option} {path}: {exc.strerror or exc}") from None


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
    metrics_host: Annotated[
        str, typer.Option(help="Address /metrics binds to (0.0.0.0 inside a container).")
    ] = "127.0.0.1",
    group_id: Annotated[str, typer.Option(help="Consumer group on the frames topic.")] = (
        "citybrain-detector"
    ),
    clip_s: Annotated[float, _CLIP_OPTION] = 0.0,
    handover_warmup_s: Annotated[
        float,
        typer.Option(
            min=0,
            max=600,
            help="For a camera taken over from another detector of the group, replay this much "
            "of its recent frames without publishing, so the pipeline is warm (standing "
            "vehicles, signal state) by the first frame nobody has handled. At least the "
            "longest max_dwell_s plus a few seconds.",
        ),
    ] = 30.0,
    session_timeout_s: Annotated[
        float,
        typer.Option(
            min=6,
            max=300,
            help="How long the group waits for a detector that stopped answering before its "
            "cameras move to the others (the broker allows 6 s and up).",
        ),
    ] = 10.0,
) -> None:
    """Detect violations in one or more camera feeds and publish them on the bus."""
    cv2.setNumThreads(1)
    stop = threading.Event()
    bus = _events_bus(bus_url)
    registry = CollectorRegistry()
    lag = ConsumerLagGauge(registry, group=group_id)
    metrics = DetectorMetrics.create(registry)
    scenes: dict[str, SceneConfig] = {}
    feeds: list[Iterable[SourceItem]] = []
    videos: list[tuple[Path, VideoFileSource]] = []
    for spec in sources:
        own = open_scene_source(spec, SceneSourceOptions(seconds=sim_seconds, variant=variant))
        if own is not None:
            scenes[own.scene.camera_id] = own.scene
            feeds.append(own)
        elif spec.startswith("video:"):
            video = _open_video(Path(spec[6:]), scene_path, scenes)
            feeds.append(video)
            videos.append((Path(spec[6:]), video))
        elif spec.startswith("kafka://"):
            try:
                frames_bus = open_bus(spec)
                assert isinstance(frames_bus, KafkaBus)  # a kafka:// URL opens one
                feeds.append(
                    KafkaFrameSource(
                        frames_bus,
                        group_id=group_id,
                        stop=stop,
                        handover_replay_s=handover_warmup_s,
                        session_timeout_s=session_timeout_s,
                        on_lag=lag.update,
                        on_commit_failed=metrics.commit_failures.inc,
                    )
                )
            except (ValueError, BusError) as exc:
                raise fail(f"--source {spec}: {exc}") from None
        else:
            raise fail(f"--source {spec!r}: expected sim:CAMERA, video:PATH or kafka://HOST:PORT")

    if metrics_port:
        start_http_server(metrics_port, addr=metrics_host, registry=registry)
    directory = SceneDirectory(scenes_dir or config_path(SCENES_DIR))
    worker = DetectorWorker(
        scenes=lambda camera_id: scenes.get(camera_id) or directory(camera_id),
        sinks=[bus_sink(bus)],
        metrics=metrics,
        evidence=EvidenceWriter(snapshots),
        recorder=_recorder(snapshots, clip_s=clip_s),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    for item in interleave(feeds):
        worker.handle(item)
        if stop.is_set():
            break
    worker.close()
    bus.flush()
    bus.close()
    for video_path, video in videos:
        for note in video.report.notes(video_path):
            out.print(f"note: {note}", markup=False)
    stats = worker.stats
    out.print(
        f"frames read: {stats.frames_read}  processed: {stats.frames_processed}  "
        f"dropped: {stats.frames_dropped}  events: {dict(stats.events)}"
    )


def _open_video(
    path: Path, scene_path: Path | None, scenes: dict[str, SceneConfig]
) -> VideoFileSource:
    """A ``video:`` source, its scene (from ``--scene``) added to ``scenes``; exits 2 on a
    missing scene, an unreadable file or a scene that does not fit it."""
    if scene_path is None:
        raise fail("--scene is required with a video: source")
    scene = scenes.setdefault(_load_scene(scene_path).camera_id, _load_scene(scene_path))
    try:
        video = VideoFileSource(path, camera_id=scene.camera_id, fps=scene.fps)
    except VideoOpenError as exc:
        raise fail(str(exc)) from None
    _check_fit(scene, scene_path, video.resolution_wh)
    return video


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
