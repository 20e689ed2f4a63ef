"""The scenario suite: every Wuzhen and Hangzhou camera under every simulator look, and
short clips of the real world's tricks at 1280x720 and 1920x1080.

Each scenario renders a camera, sends it through the detector as JPEG frames (as a feed
would), and scores the events against the simulator's truth with the same matcher as
``citybrain eval``. The goal (issue 4) is precision and recall of at least 0.97 per violation
type; a scenario holds only a handful of violations, so there each one counts: no misses and
no false alarms. Where the camera has a signal, the state the detector held is also scored
per frame (issue 13: known within a second, right on 98% of frames away from a change).

The full grid (8 cameras x 7 looks) runs 60 s at 640x360. The newer looks (small LED heads
with bloom, exposure jumps), clips that start mid-phase and the higher resolutions (where the
reduced-scale decode differs) run as a short list of 30 s clips, to keep ``make test`` within
its time budget.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from services.common.events import ViolationType
from services.detector.evaluate import Occurrence, TypeScore, evaluate
from services.detector.evaluate_signal import SignalScore, score_signal
from services.detector.pipeline import DetectorPipeline
from simulators.feed import simulate_camera

CAMERAS = [f"{city}-cam-0{n}" for city in ("wuzhen", "hangzhou") for n in range(1, 5)]
GRID_VARIANTS = ("day", "dusk", "night", "rain", "drift", "shake", "jpeg", "nightfall")
SECONDS = 60
RESOLUTION_WH = (640, 360)
GOAL = 0.97
SIGNAL_GOAL = 0.98


@dataclass(frozen=True, slots=True)
class Scenario:
    camera_id: str
    variant: str
    resolution_wh: tuple[int, int] = RESOLUTION_WH
    seconds: float = SECONDS
    # Replaces the configured phase shift, to start the clip at a chosen point of the cycle.
    signal_offset_s: float | None = None
    # Replaces keys of the camera's traffic settings (configs/simulator.yaml), and names why.
    traffic: tuple[tuple[str, float], ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        width, height = self.resolution_wh
        start = "" if self.signal_offset_s is None else f"-from{self.signal_offset_s:g}s"
        label = f"-{self.label}" if self.label else ""
        return f"{self.camera_id}-{self.variant}-{width}x{height}{start}{label}"


# Dense mixed traffic (issue 13): motorbikes and bicycles in every lane, queue heads that pull
# out on red, riders and drivers who creep over the line on red and stop there.
MIXED = (
    ("two_wheeler_share", 0.45),
    ("queue_pullouts_per_red", 1.0),
    ("creepers_per_red", 1.0),
)


# An offset of x starts the clip x s into the cycle: wuzhen-cam-01's is green 0-12 s, amber
# 12-15 s, red 15-25 s; wuzhen-cam-03's green 0-10 s, amber 10-13 s, red 13-24 s; and
# hangzhou-cam-01's green 0-13 s, amber 13-16 s, red 16-26 s.
TRICKS = (
    Scenario("wuzhen-cam-01", "led", (1920, 1080), 30, signal_offset_s=19),  # mid-red
    Scenario("hangzhou-cam-01", "led_horizontal", (1280, 720), 30, signal_offset_s=6),
    Scenario("wuzhen-cam-03", "led", (1280, 720), 30, signal_offset_s=17),
    Scenario("hangzhou-cam-02", "day", (1920, 1080), 30),
    Scenario("wuzhen-cam-01", "exposure", (1280, 720), 30),
    Scenario("wuzhen-cam-02", "day", (1280, 720), 30),
    Scenario("hangzhou-cam-03", "day", (1920, 1080), 30),
    Scenario("hangzhou-cam-04", "exposure", (1280, 720), 30),
    # Light falling through the clip at a higher resolution, over the look's whole fall.
    Scenario("hangzhou-cam-01", "nightfall", (1280, 720), 60),
    # A queue stands at the line from the first frame (the clip starts 4 s into red); its
    # head creeps over on red, another pulls out of it.
    Scenario("wuzhen-cam-01", "day", RESOLUTION_WH, 30, 19, MIXED, "mixed-queue-at-start"),
    # A car parked in a no-parking zone from before the first frame: the background holds
    # it, so it is found only when it leaves, its dwell counted from the first frame.
    Scenario(
        "wuzhen-cam-02",
        "day",
        RESOLUTION_WH,
        30,
        traffic=(("zone_violators_at_start", 1),),
        label="parked-at-start",
    ),
)


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    events: dict[ViolationType, TypeScore]
    signal: SignalScore | None
    # Track ids that reported more than one violation of a type. Each simulated vehicle
    # commits at most one of each, and the control center counts a track's second one as a
    # repeat of its first: two vehicles under one id lose a violation there.
    reused_track_ids: tuple[tuple[str, int], ...] = ()

    def report(self) -> dict[str, object]:
        return {
            **{kind.value: score.to_dict() for kind, score in self.events.items()},
            "signal": self.signal.to_dict() if self.signal else None,
            "reused_track_ids": self.reused_track_ids,
        }


def run(scenario: Scenario) -> ScenarioResult:
    camera = simulate_camera(
        scenario.camera_id,
        seconds=scenario.seconds,
        seed=0,
        variant=scenario.variant,
        resolution_wh=scenario.resolution_wh,
        signal_offset_s=scenario.signal_offset_s,
        traffic_update=dict(scenario.traffic),
    )
    pipeline = DetectorPipeline(camera.scene)
    detected: list[Occurrence] = []
    reporters: Counter[tuple[str, int]] = Counter()
    held: dict[int, str] = {}
    for frame in camera.jpeg_frames(quality=85):
        for event in pipeline.process(frame):
            detected.append(Occurrence(type=event.type, frame=event.frame))
            reporters[(event.type.value, event.track_id)] += 1
        held[frame.index] = pipeline.signal_state.value
    truth = [Occurrence(type=ViolationType(v.type), frame=v.frame) for v in camera.truth]
    signal = None
    if camera.scene.traffic_light is not None:
        frames = sorted(held)
        signal = score_signal(
            [camera.light_state(i) for i in frames], [held[i] for i in frames], fps=camera.fps
        )
    return ScenarioResult(
        events=evaluate(truth, detected, fps=camera.fps),
        signal=signal,
        reused_track_ids=tuple(sorted(k for k, n in reporters.items() if n > 1)),
    )


def assert_meets_goals(result: ScenarioResult) -> None:
    report = result.report()
    assert not result.reused_track_ids, report
    for kind_score in result.events.values():
        assert kind_score.precision >= GOAL, report
        assert kind_score.recall >= GOAL, report
    if result.signal is not None:
        assert result.signal.known_in_time, report
        assert result.signal.accuracy >= SIGNAL_GOAL, report


def grid() -> list[object]:
    return [
        pytest.param(Scenario(camera_id, variant), id=f"{camera_id}-{variant}")
        for camera_id in CAMERAS
        for variant in GRID_VARIANTS
    ]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", grid())
def test_scenario_meets_accuracy_goal(scenario: Scenario) -> None:
    assert_meets_goals(run(scenario))


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [pytest.param(s, id=s.name) for s in TRICKS])
def test_real_world_trick_meets_accuracy_goal(scenario: Scenario) -> None:
    assert_meets_goals(run(scenario))
