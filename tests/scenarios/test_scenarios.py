"""The scenario suite: every Wuzhen and Hangzhou camera under every simulator variant.

Each scenario renders 60 s of a camera at 640x360, sends it through the detector as JPEG
frames (as a feed would), and scores the events against the simulator's truth with the same
matcher as ``citybrain eval``. The goal (issue 4) is precision and recall of at least 0.97
per violation type; a scenario holds only a handful of violations, so there each one counts:
no misses and no false alarms.
"""

from __future__ import annotations

import pytest

from services.common.events import ViolationType
from services.detector.evaluate import Occurrence, TypeScore, evaluate
from services.detector.pipeline import DetectorPipeline
from simulators.feed import VARIANTS, simulate_camera

CAMERAS = [f"{city}-cam-0{n}" for city in ("wuzhen", "hangzhou") for n in range(1, 5)]
SECONDS = 60
RESOLUTION_WH = (640, 360)
GOAL = 0.97


def scenarios() -> list[object]:
    return [
        pytest.param(camera_id, variant, id=f"{camera_id}-{variant}")
        for camera_id in CAMERAS
        for variant in VARIANTS
    ]


def score(camera_id: str, variant: str) -> dict[ViolationType, TypeScore]:
    camera = simulate_camera(
        camera_id, seconds=SECONDS, seed=0, variant=variant, resolution_wh=RESOLUTION_WH
    )
    pipeline = DetectorPipeline(camera.scene)
    detected = [
        Occurrence(type=event.type, frame=event.frame)
        for frame in camera.jpeg_frames(quality=85)
        for event in pipeline.process(frame)
    ]
    truth = [Occurrence(type=ViolationType(v.type), frame=v.frame) for v in camera.truth]
    return evaluate(truth, detected, fps=camera.fps)


@pytest.mark.slow
@pytest.mark.parametrize(("camera_id", "variant"), scenarios())
def test_scenario_meets_accuracy_goal(camera_id: str, variant: str) -> None:
    scores = score(camera_id, variant)
    report = {kind.value: s.to_dict() for kind, s in scores.items()}
    for kind_score in scores.values():
        assert kind_score.precision >= GOAL, report
        assert kind_score.recall >= GOAL, report
