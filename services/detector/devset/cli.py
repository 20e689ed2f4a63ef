"""``citybrain eval-devset``: replay every labelled real clip and score the detector on it."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated

import cv2
import typer
from rich.console import Console
from rich.table import Table

from services.common.config.loader import ConfigError
from services.common.console import fail, frame_progress, out
from services.common.events import ViolationEvent, ViolationType
from services.detector.devset.labels import DevClip, clip_dirs, load_clip
from services.detector.devset.run import replay_clip
from services.detector.devset.score import (
    DEFAULT_GUARD_S,
    ClipScore,
    DevsetTotal,
    score_clip,
)
from services.detector.evaluate import TOLERANCE_S
from services.detector.sources import VideoOpenError


def eval_devset_command(
    root: Annotated[
        Path,
        typer.Argument(
            help="The dev-set folder: one sub-folder per clip holding labels.json, scene.yaml "
            "and the video (scripts/devset_build.py makes it from devset/sources.yaml)."
        ),
    ],
    *,
    only: Annotated[
        list[str] | None, typer.Option("--clip", help="Score only this clip (repeatable).")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the scores here as JSON.")
    ] = None,
    events_dir: Annotated[
        Path | None,
        typer.Option("--events-dir", help="Also write each clip's events as DIR/<clip>.jsonl."),
    ] = None,
    tolerance_s: Annotated[
        float,
        typer.Option(
            min=0.0, help="A red-light event matches a labelled crossing this close in time."
        ),
    ] = TOLERANCE_S[ViolationType.RED_LIGHT],
    guard_s: Annotated[
        float,
        typer.Option(min=0.0, help="Signal frames this close to a labelled change are not scored."),
    ] = DEFAULT_GUARD_S,
) -> None:
    """Replay each clip through the detector and print, per clip, red-light precision and
    recall, parking false alarms and per-frame signal accuracy, then the totals.

    The clips, their label format and where they come from: devset/README.md.
    """
    if not root.is_dir():
        raise fail(f"{root}: no such directory")
    clips, problems = _load_clips(root, only or [])
    if not clips:
        raise fail("\n".join(problems) or f"{root}: no clip folders (*/labels.json)")
    cv2.setNumThreads(1)
    scores: list[ClipScore] = []
    with frame_progress() as progress:
        for clip in clips:
            task = progress.add_task(clip.name, total=clip.labels.frames)
            try:
                run = replay_clip(clip, on_frame=partial(progress.advance, task))
            except VideoOpenError as exc:
                problems.append(f"{clip.name}: {exc}")
                continue
            if events_dir is not None:
                _write_events(events_dir / f"{clip.name}.jsonl", run.events)
            scores.append(
                score_clip(
                    clip.labels,
                    detected=run.occurrences(),
                    held_signal=run.held_signal if clip.scene.traffic_light else None,
                    frames_read=run.frames_read,
                    frames_dropped=run.frames_dropped,
                    replay_fps=run.replay_fps,
                    tolerance_s={ViolationType.RED_LIGHT: tolerance_s},
                    guard_s=guard_s,
                )
            )
    total = DevsetTotal.of(scores)
    # Piped output gets rich's default 80 columns, too few for the table.
    console = out if out.is_terminal else Console(highlight=False, width=_TABLE_WIDTH)
    console.print(_table(scores, total))
    if json_path is not None:
        report = {
            "schema": 1,
            "root": str(root),
            "settings": {"tolerance_s": tolerance_s, "guard_s": guard_s},
            "clips": [score.to_dict() for score in scores],
            "total": total.to_dict(),
            "problems": problems,
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    out.print(_summary(total))
    if problems:
        raise fail("\n".join(problems))


def _write_events(path: Path, events: list[ViolationEvent]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(event.to_dict(), separators=(",", ":")) + "\n" for event in events)
    path.write_text("".join(lines), encoding="utf-8")


def _load_clips(root: Path, only: list[str]) -> tuple[list[DevClip], list[str]]:
    clips: list[DevClip] = []
    problems: list[str] = []
    directories = [d for d in clip_dirs(root) if not only or d.name in only]
    for directory in directories:
        try:
            clips.append(load_clip(directory))
        except ConfigError as exc:
            problems.append(str(exc))
    found = {directory.name for directory in directories}
    problems.extend(
        f"--clip {name}: no such clip under {root}" for name in only if name not in found
    )
    return clips, problems


_HEADERS = (
    "frames",
    "runners",
    "det",
    "hit",
    "P",
    "R",
    "missed",
    "parked",
    "park FA",
    "sig",
    "sig@s",
    "fps",
)
_TABLE_WIDTH = 120
_CAPTION = (
    "runners: labelled red-light crossings; det/hit: red-light events, and those matching one; "
    "P/R: precision/recall; missed: frames of unmatched crossings; parked: labelled parking "
    "violations found, of those labelled; park FA: parking false alarms; sig: per-frame "
    "signal accuracy; sig@s: first time any state is held; fps: replay. A draft clip's "
    "labels are not final: it is left out of the total."
)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _found(found: int, labelled: int) -> str:
    return f"{found}/{labelled}" if labelled else "-"


def _table(scores: list[ClipScore], total: DevsetTotal) -> Table:
    table = Table(title="Real-footage development set", caption=_CAPTION)
    table.add_column("clip", no_wrap=True)
    for header in _HEADERS:
        table.add_column(header, justify="right")
    for score in scores:
        red, signal = score.red_light, score.signal
        first = signal.first_known_frame if signal else None
        table.add_row(
            score.clip if score.final else f"{score.clip} (draft)",
            str(score.frames_read - score.frames_dropped),
            str(red.truth),
            str(red.detected),
            str(red.matched),
            _ratio(red.precision),
            _ratio(red.recall),
            " ".join(map(str, red.missed_frames)) or "-",
            _found(score.parking.matched, score.parking.truth),
            str(score.parking_false_alarms),
            _ratio(signal.accuracy if signal else None),
            "never"
            if signal and first is None
            else _ratio(None if first is None else first / score.fps),
            f"{score.replay_fps:.0f}",
        )
    table.add_section()
    red = total.red_light
    table.add_row(
        "total (final labels)",
        str(total.frames),
        str(red.truth),
        str(red.detected),
        str(red.matched),
        _ratio(red.precision),
        _ratio(red.recall),
        "",
        _found(total.parked_found, total.parked_labelled),
        str(total.parking_false_alarms),
        _ratio(total.signal_accuracy),
        "",
        "",
    )
    return table


def _summary(total: DevsetTotal) -> str:
    red = total.red_light
    return (
        f"{total.clips} clips with final labels, {total.frames} frames: red light precision "
        f"{red.precision:.2f}, recall {red.recall:.2f} ({red.matched} of {red.truth} "
        f"runners); parking violations found {total.parked_found} of {total.parked_labelled}, "
        f"false alarms {total.parking_false_alarms}; signal accuracy "
        f"{_ratio(total.signal_accuracy)} over {total.signal_frames_scored} frames"
    )


def register(app: typer.Typer) -> None:
    app.command("eval-devset")(eval_devset_command)
