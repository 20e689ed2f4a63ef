"""``citybrain loadtest``: load a running stack, reconcile against ground truth, report."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.common.config.loader import ConfigError
from services.common.console import err, fail, out, parse_resolution
from services.loadtest.report import analyse, plot
from services.loadtest.run import KillSpec, LoadSpec, LoadTestError, run_load
from services.loadtest.sampler import Sample
from services.stack.config import DEFAULT_STACK_PATH, StackConfig, load_stack_config
from services.stack.plan import StackPaths, Urls, detector_group, dispatcher_group

# A replay of a lost violation goes on this long after it (a decision may come later).
REPLAY_AFTER_MS = 10_000


def loadtest(  # noqa: PLR0917
    cameras: Annotated[int, typer.Option(min=1, max=2000, help="Cameras to stream.")],
    fps: Annotated[
        float,
        typer.Option(
            min=0.1, max=30, help="Frames per second per camera; must be the stack's fleet.fps."
        ),
    ],
    seconds: Annotated[float, typer.Option(min=5, max=3600, help="How long to stream.")],
    json_out: Annotated[
        Path,
        typer.Option(
            "--json", help="Write the report here (JSON); the plot goes beside it as .png."
        ),
    ],
    resolution: Annotated[str, typer.Option(help="Frame size WIDTHxHEIGHT.")] = "1280x720",
    kill: Annotated[
        str | None,
        typer.Option(
            help="SERVICE@SECONDS: SIGKILL one process of that role (or that name, "
            "e.g. detector-2) this many seconds in."
        ),
    ] = None,
    file: Annotated[Path, typer.Option("--file", "-f", help="The running stack's file.")] = (
        DEFAULT_STACK_PATH
    ),
    generators: Annotated[
        int | None,
        typer.Option(
            min=1, max=32, help="Load-generator processes (default: one per 150 frames/s)."
        ),
    ] = None,
    settle_s: Annotated[
        float, typer.Option(min=0, help="Seconds at the start not scored (background learning).")
    ] = 10.0,
    seed: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Traffic seed (default: from the start time). The report names the seed it "
            "ran with: pass it to run the same traffic again.",
        ),
    ] = None,
) -> None:
    """Stream simulated cameras into a running `citybrain stack`, sample it every second,
    optionally kill a process, drain, and reconcile the control center against the
    simulators' ground truth. Writes JSON (offered and achieved fps, drops, lag over time,
    e2e latency percentiles from the frame each violation was decided on, and from the
    violation's own frame, CPU/RSS per process, violations expected/found/lost/
    lost_in_handover/duplicated/extra) and a PNG report. Exit 0 when it ran, whatever it
    found; 2 for bad options or no running stack."""
    parse_resolution(resolution)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        config = load_stack_config(file)
        kill_spec = KillSpec.parse(kill) if kill else None
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    if kill_spec is not None and kill_spec.at_s >= seconds:
        raise fail(f"--kill {kill}: {kill_spec.at_s:g} s is not within --seconds {seconds:g}")
    spec = LoadSpec(
        cameras=cameras,
        fps=fps,
        resolution=resolution,
        seconds=seconds,
        kill=kill_spec,
        generators=generators,
        settle_s=settle_s,
        seed=seed,
    )
    run_dir = StackPaths.of(config).root / "loadtest" / time.strftime("%Y%m%dT%H%M%S")
    groups = (detector_group(config), dispatcher_group(config))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[line]}"),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("load", total=seconds, line="starting generators")
        last: list[Sample] = []

        def tick(sample: Sample, spec: LoadSpec) -> None:
            fps_now = (sample.processed - last[-1].processed) if last else 0.0
            last.append(sample)
            phase = "load" if sample.t_s <= spec.seconds else "drain"
            lag = " ".join(
                f"{g.rsplit('-', 1)[-1]} lag {sample.lag_by_group.get(g, 0):.0f}" for g in groups
            )
            progress.update(
                task,
                description=phase,
                completed=min(sample.t_s, seconds),
                line=f"{fps_now:.0f} fps detected  {lag}",
            )

        try:
            run = run_load(config, spec, run_dir=run_dir, progress=tick)
        except LoadTestError as exc:
            raise fail(str(exc)) from None
    report, _result = analyse(run)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    png = json_out.with_suffix(".png")
    plot(run, report, png)
    _summary(report)
    replay_hint(report, config)
    out.print(f"[green]ok[/green] report {json_out}, plot {png}, generator logs in {run_dir}")


def replay_hint(report: dict[str, Any], config: StackConfig) -> None:
    """For the first violation lost, the command that replays what the detectors saw of
    it, while the frames topic still keeps its frames: from the camera's first frame, where
    its detector's pipeline started, so that the replay is in the same state."""
    if not report["lost"]:
        return
    lost = report["lost"][0]
    scene = StackPaths.of(config).fleet.scenes / f"{lost['camera_id']}.yaml"
    kill = report.get("kill") or {}
    out.print(
        f"lost {lost['type']} at {lost['camera_id']} ({lost['ts_ms']}); what the detectors "
        f"saw of it: citybrain replay {Urls.of(config).bus} --scene {scene} "
        f"--since-ts-ms {report['start_ms']} --until-ts-ms {lost['ts_ms'] + REPLAY_AFTER_MS} "
        "--events /tmp/lost.jsonl --trace /tmp/lost-trace.jsonl",
        markup=False,
    )
    if lost["camera_id"] in kill.get("moved", ()):
        out.print(
            "It moved at the kill: the detector that took it over started at the "
            "tracker_epoch_ms of its events for the camera; replay from there for what that "
            "one saw.",
            markup=False,
        )


def _summary(report: dict[str, object]) -> None:
    table = Table("measure", "value", title="load test")
    rows = [
        (
            "offered / published / achieved fps",
            f"{report['offered_fps']} / {report['published_fps']} / {report['achieved_fps']}",
        ),
        ("e2e latency p50 / p95 / p99 ms", _percentiles(report["e2e_latency_ms"])),
        ("violation to entry p50 / p95 / p99 ms", _percentiles(report["violation_to_entry_ms"])),
        ("violations", json.dumps(report["violations"])),
        ("seed", str(report["seed"])),
        ("drops", json.dumps(report["drops"])),
        ("kill", json.dumps(report["kill"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)


def _percentiles(latency: object) -> str:
    assert isinstance(latency, dict)
    return " / ".join(str(latency.get(k, "-")) for k in ("p50", "p95", "p99"))


def register(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest)
