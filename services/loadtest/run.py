"""A load test against a running local stack: generators, sampling, a kill, drain, reconcile.

The stack keeps running; the load test adds its own simulated cameras (``simulate-live``
processes, the "generators"), taken from the stack's fleet after the cameras the stack's
own simulators stream, so its ground truth is complete. It samples the stack every second,
kills a process on cue, waits for the consumers to drain, then reads the control center.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from services.common.console import parse_resolution
from services.common.events import ViolationType
from services.common.queue import open_queue
from services.loadtest.reconcile import Entry, HandoverWindow, SourceDrop, TrueViolation
from services.loadtest.sampler import READY, Sample, Sampler, Target
from services.stack.config import StackConfig
from services.stack.plan import (
    HOST,
    REPO_ROOT,
    StackPaths,
    Urls,
    detector_group,
    dispatcher_group,
)
from services.stack.processes import ProcessTable, http_text, log_tail
from services.stack.runner import StackState, infra_process

# A generator publishes this many frames a second at most before its share is split again:
# at about 2 ms per 720p frame this keeps each one well under a core.
FRAMES_PER_GENERATOR = 150
# Generators render ahead (``simulate-live --render-ahead``): drawing and encoding a
# 1280x720 frame (0.92 megapixels) takes 0.93 ms in ``bench/simulate.py``, and simulating
# the traffic adds to it; the lead allows 3.2 ms, with the generators sharing the cores.
RENDER_S_PER_MEGAPIXEL = 0.0035
# A generator renders this far ahead (simulators.live.RENDER_AHEAD_CHUNK_S; the stack does
# not import the simulators, it runs them).
RENDER_AHEAD_S = 60.0
# Start-up (imports, under load) and simulating a minute of a camera's traffic.
START_S, SIMULATE_S_PER_CAMERA_MINUTE = 8.0, 0.3
READ_PAGE = 1000


class LoadTestError(RuntimeError):
    """The load test cannot run; the message says why."""


@dataclass(frozen=True, slots=True)
class KillSpec:
    """``SERVICE@SECONDS``: a role (``detector``) or a process name (``detector-2``)."""

    service: str
    at_s: float

    @classmethod
    def parse(cls, text: str) -> KillSpec:
        """
        >>> KillSpec.parse("detector@20")
        KillSpec(service='detector', at_s=20.0)
        """
        service, _, at = text.partition("@")
        try:
            at_s = float(at)
        except ValueError:
            raise ValueError(f"{text!r}: expected SERVICE@SECONDS, e.g. detector@20") from None
        if not service or at_s < 0:
            raise ValueError(f"{text!r}: expected SERVICE@SECONDS, e.g. detector@20")
        return cls(service=service, at_s=at_s)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    cameras: int
    fps: float
    resolution: str
    seconds: float
    kill: KillSpec | None = None
    generators: int | None = None  # None: one per FRAMES_PER_GENERATOR frames a second
    settle_s: float = 10.0  # a new camera's first seconds are not scored
    # The traffic seed; None picks one from the start time. A report names the seed it ran
    # with, so that a run that lost something can be run again on the same traffic.
    seed: int | None = None
    tail_s: float = 3.0  # nor its last ones (a red light is decided a few frames later)
    max_drain_s: float = 60.0


@dataclass
class KillRecord:
    process: str
    pid: int
    at_s: float
    at_ms: int
    cameras: list[str] = field(default_factory=list)
    resumed_s: dict[str, float] = field(default_factory=dict)  # camera -> after the kill
    # When the detectors' lag was back under a second of frames, every camera resumed.
    caught_up_s: float | None = None


@dataclass
class LoadRun:
    """Everything measured; :mod:`services.loadtest.report` turns it into JSON and a plot."""

    spec: LoadSpec
    cameras: list[str]
    generators: int
    start_ms: int
    end_ms: int
    seed: int
    session_timeout_s: float
    samples: list[Sample]
    truths: list[TrueViolation]
    source_drops: list[SourceDrop]
    entries: list[Entry]
    kill: KillRecord | None
    drained_s: float


Progress = Callable[[Sample, LoadSpec], None]


def load_cameras(config: StackConfig, fleet_ids: list[str], count: int) -> list[str]:
    """The fleet cameras after those the stack's own simulators stream."""
    free = fleet_ids[config.simulators.cameras :]
    if count > len(free):
        raise LoadTestError(
            f"--cameras {count}: the stack's fleet has {len(free)} cameras not streamed by its "
            f"simulators (fleet.cameras {config.fleet.cameras} - simulators.cameras "
            f"{config.simulators.cameras}); raise fleet.cameras and run `citybrain stack up`"
        )
    return free[:count]


def run_load(config: StackConfig, spec: LoadSpec, *, run_dir: Path, progress: Progress) -> LoadRun:
    """Run one load test; the stack must be up (``citybrain stack up``)."""
    paths = StackPaths.of(config)
    state = StackState.load(paths.state)
    if state is None:
        raise LoadTestError(f"no stack {config.name!r} is up; run `citybrain stack up` first")
    if not math.isclose(spec.fps, config.fleet.fps):
        raise LoadTestError(
            f"--fps {spec.fps:g}: the stack's cameras run at fleet.fps {config.fleet.fps:g} "
            "(their scenes say so); change fleet.fps and run `citybrain stack up` again"
        )
    cameras = load_cameras(config, paths.fleet.camera_ids(), spec.cameras)
    table = ProcessTable(paths.root)
    down = [s.name for s in state.services if table.process(s.name) is None]
    if down:
        raise LoadTestError(f"not running: {', '.join(down)}; run `citybrain stack up` first")
    run_dir.mkdir(parents=True, exist_ok=True)
    shares = _shares(cameras, spec)
    lead_s = _lead_s(shares, spec)
    start_ms = int((time.time() + lead_s) * 1000)
    end_ms = start_ms + int(spec.seconds * 1000)
    seed = spec.seed if spec.seed is not None else start_ms // 1000 % 100_000
    generators = [
        _start_generator(
            config, paths, share, spec, index=i, start_ms=start_ms, seed=seed, run_dir=run_dir
        )
        for i, share in enumerate(shares)
    ]
    targets = [Target(s.name, s.role, s.metrics_url, table.process(s.name)) for s in state.services]
    targets += [
        Target(kind, kind, None, infra_process(config, kind)) for kind in ("kafka", "redis")
    ]
    targets += [
        Target(f"generator-{i + 1}", "generator", url, psutil.Process(p.pid))
        for i, (p, url) in enumerate(generators)
    ]
    sampler = Sampler(targets, cameras=set(cameras))
    samples: list[Sample] = []
    kill: KillRecord | None = None
    try:
        _wait_ready(generators, run_dir, start_ms=start_ms, lead_s=lead_s)
        t_s = 0.0
        while time.time() * 1000 < end_ms:
            time.sleep(max(0.0, (start_ms / 1000 + t_s) - time.time()))
            sample = sampler.sample(t_s)
            samples.append(sample)
            progress(sample, spec)
            if spec.kill is not None and kill is None and t_s >= spec.kill.at_s:
                kill = _kill(spec.kill, state, table, sample)
            t_s += 1.0
        drained_s = _drain(config, sampler, samples, spec, progress)
    finally:
        for process, _url in generators:
            _stop(process)
    if kill is not None:
        _resumed(kill, samples)
        _caught_up(kill, samples, group=detector_group(config), lag=spec.cameras * spec.fps)
    truths, drops = _read_truths(run_dir)
    return LoadRun(
        spec=spec,
        cameras=cameras,
        generators=len(generators),
        start_ms=start_ms,
        end_ms=end_ms,
        seed=seed,
        session_timeout_s=config.detectors.session_timeout_s,
        samples=samples,
        truths=truths,
        source_drops=drops,
        entries=_read_entries(Urls.of(config).queue, config.name, set(cameras)),
        kill=kill,
        drained_s=drained_s,
    )


def _shares(cameras: list[str], spec: LoadSpec) -> list[list[str]]:
    count = spec.generators or math.ceil(len(cameras) * spec.fps / FRAMES_PER_GENERATOR)
    count = max(1, min(count, len(cameras)))
    return [cameras[i::count] for i in range(count)]


def _lead_s(shares: list[list[str]], spec: LoadSpec) -> float:
    """How long before the load's start the generators are launched: long enough to start,
    simulate and render ahead their first chunk of frames.

    >>> spec = LoadSpec(cameras=60, seconds=60, fps=5, resolution="1280x720")
    >>> round(_lead_s([["cam"] * 30] * 2, spec))
    46
    """
    width, height = parse_resolution(spec.resolution)
    camera_minutes = max(len(s) for s in shares) * min(spec.seconds, RENDER_AHEAD_S) / 60
    render_s = camera_minutes * 60 * spec.fps * width * height / 1e6 * RENDER_S_PER_MEGAPIXEL
    sharing = max(1.0, len(shares) / (os.cpu_count() or 1))
    return START_S + camera_minutes * SIMULATE_S_PER_CAMERA_MINUTE + render_s * sharing


def _start_generator(
    config: StackConfig,
    paths: StackPaths,
    cameras: list[str],
    spec: LoadSpec,
    *,
    index: int,
    start_ms: int,
    seed: int,
    run_dir: Path,
) -> tuple[subprocess.Popen[bytes], str]:
    port = config.ports.simulator_metrics + config.simulators.replicas + index
    camera_args = [arg for camera in cameras for arg in ("--camera", camera)]
    argv = [
        sys.executable, "-m", "services", "simulate-live", "--to", Urls.of(config).bus,
        *camera_args, "--seconds", f"{spec.seconds:g}", "--start-ts-ms", str(start_ms),
        "--resolution", spec.resolution, "--truth", str(run_dir / f"truth-{index + 1}.jsonl"),
        "--metrics-port", str(port), "--catalogue", str(paths.fleet.catalogue),
        "--config", str(paths.fleet.simulator_config), "--fleet-order", str(paths.fleet.order),
        "--seed", str(seed), "--render-ahead",
    ]  # fmt: skip
    (run_dir / f"truth-{index + 1}.jsonl").unlink(missing_ok=True)
    with (run_dir / f"generator-{index + 1}.log").open("ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, f"http://{HOST}:{port}/metrics"


def _wait_ready(
    generators: list[tuple[subprocess.Popen[bytes], str]],
    run_dir: Path,
    *,
    start_ms: int,
    lead_s: float,
) -> None:
    """Until every generator has its first frames rendered; a generator not ready when
    the load is due would skip its first frames as late, so that is an error."""
    for index, (process, url) in enumerate(generators):
        while not _feed_ready(url):
            if process.poll() is not None:
                tail = log_tail(run_dir / f"generator-{index + 1}.log")
                raise LoadTestError(f"generator-{index + 1} stopped:\n{tail}")
            if time.time() * 1000 > start_ms:
                raise LoadTestError(
                    f"generator-{index + 1} had not rendered its first frames when the load "
                    f"was due, {lead_s:.0f} s after launch (the machine is busier than the "
                    "lead allows for); run fewer cameras or stop other work"
                )
            time.sleep(0.2)


def _feed_ready(url: str) -> bool:
    text = http_text(url)
    return text is not None and any(
        s.name == READY and s.value == 1
        for family in text_string_to_metric_families(text)
        for s in family.samples
    )


def _kill(spec: KillSpec, state: StackState, table: ProcessTable, sample: Sample) -> KillRecord:
    names = [s.name for s in state.services if spec.service in (s.name, s.role)]
    alive = [n for n in names if table.process(n) is not None]
    if not alive:
        raise LoadTestError(f"--kill {spec.service}: no such running process in the stack")
    # The detector with the most of our cameras, so that the kill moves some.
    name = max(alive, key=lambda n: len(_owned(sample, n)))
    process = table.process(name)
    assert process is not None
    process.send_signal(signal.SIGKILL)
    return KillRecord(
        process=name,
        pid=process.pid,
        at_s=sample.t_s,
        at_ms=int(time.time() * 1000),
        cameras=sorted(_owned(sample, name)),
    )


def _owned(sample: Sample, process: str) -> set[str]:
    return {c for c, n in sample.camera_frames.get(process, {}).items() if n > 0}


def _resumed(kill: KillRecord, samples: list[Sample]) -> None:
    """When each of the killed process's cameras was next worked on by another process."""
    before = next((s for s in reversed(samples) if s.t_s <= kill.at_s), None)
    if before is None:
        return
    for sample in samples:
        if sample.t_s <= kill.at_s:
            continue
        for process, frames in sample.camera_frames.items():
            if process == kill.process:
                continue
            for camera in kill.cameras:
                was = before.camera_frames.get(process, {}).get(camera, 0.0)
                if camera not in kill.resumed_s and frames.get(camera, 0.0) > was:
                    kill.resumed_s[camera] = sample.t_s - kill.at_s


def _caught_up(kill: KillRecord, samples: list[Sample], *, group: str, lag: float) -> None:
    """The first time after every camera resumed that the group's lag was under ``lag``."""
    if len(kill.resumed_s) < len(kill.cameras):
        return
    resumed_at = kill.at_s + max(kill.resumed_s.values(), default=0.0)
    kill.caught_up_s = next(
        (s.t_s - kill.at_s for s in samples
         if s.t_s >= resumed_at and s.lag_by_group.get(group, 0.0) <= lag),
        None,
    )  # fmt: skip


def handover_windows(run: LoadRun, *, margin_ms: int = 2_000) -> list[HandoverWindow]:
    """Each moved camera is in transit from just before the kill until the new owner has
    caught up with the live stream (it resumes with a backlog, processed at full speed)."""
    if run.kill is None:
        return []
    end_ms = (
        run.kill.at_ms + int(run.kill.caught_up_s * 1000) + margin_ms
        if run.kill.caught_up_s is not None
        else run.end_ms
    )
    return [HandoverWindow(c, run.kill.at_ms - margin_ms, end_ms) for c in run.kill.cameras]


def _drain(
    config: StackConfig,
    sampler: Sampler,
    samples: list[Sample],
    spec: LoadSpec,
    progress: Progress,
) -> float:
    """Sample until both consumer groups have no lag (twice in a row), or time runs out."""
    groups = (detector_group(config), dispatcher_group(config))
    started = time.monotonic()
    quiet = 0
    t_s = samples[-1].t_s if samples else 0.0
    while time.monotonic() - started < spec.max_drain_s and quiet < 3:
        time.sleep(1.0)
        t_s += 1.0
        sample = sampler.sample(t_s)
        samples.append(sample)
        progress(sample, spec)
        busy = any(sample.lag_by_group.get(g, 0.0) > 0 for g in groups)
        quiet = 0 if busy else quiet + 1
    return time.monotonic() - started


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _read_truths(run_dir: Path) -> tuple[list[TrueViolation], list[SourceDrop]]:
    """The generators' ground truth: violations, and the frames they skipped."""
    truths, drops = [], []
    for path in sorted(run_dir.glob("truth-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("kind") == "source_drop":
                drops.append(SourceDrop(record["camera_id"], int(record["ts_ms"])))
            else:
                truths.append(
                    TrueViolation(
                        camera_id=record["camera_id"],
                        type=ViolationType(record["type"]),
                        ts_ms=int(record["ts_ms"]),
                    )
                )
    return truths, drops


def _read_entries(queue_url: str, prefix: str, cameras: set[str]) -> list[Entry]:
    async def read_all() -> list[Entry]:
        queue = open_queue(queue_url, prefix=prefix)
        found: list[Entry] = []
        after = "0-0"
        try:
            while page := await queue.read(after=after, count=READ_PAGE):
                for item in page:
                    fields = item.fields
                    if fields.camera_id in cameras:
                        found.append(
                            Entry(
                                violation_id=item.violation_id,
                                camera_id=fields.camera_id,
                                type=fields.type,
                                ts_ms=fields.ts_ms,
                                dispatched_ts_ms=fields.dispatched_ts_ms,
                                decided_ts_ms=fields.decided_ts_ms,
                            )
                        )
                    after = item.entry_id
        finally:
            await queue.close()
        return found

    return asyncio.run(read_all())
