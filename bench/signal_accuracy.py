"""Per-frame signal accuracy of the detector, per simulated look and per real clip.

For each clip it runs the whole ``DetectorPipeline`` and records the signal state it holds
after each frame (what ``replay --trace`` shows), then scores it against the truth with
``services.detector.evaluate_signal``: the seconds until the state is first known, and the
share of frames right outside half a second around each change of the true state.

* Simulated: wuzhen-cam-01 in every look of the simulator, as JPEG frames (the Kafka feed's
  path: reduced-scale colour decode) and as decoded BGR frames (the replay path: the roi at
  full resolution); small LED heads at 1280x720 and 1920x1080; clips starting mid-red and
  mid-green.
* Real: with ``--devset DIR``, every ``DIR/<clip>/`` holding ``clip.mp4``, ``scene.yaml`` and
  ``labels.json`` (whose ``signal`` list gives the state per frame range), read as BGR frames
  and, re-encoded as JPEG (quality 85), as a camera's feed would send them; and once more as
  JPEG pasted on a black 1280x720 frame, where the decode is at 1/4 scale.

    .venv/bin/python bench/signal_accuracy.py [--seconds 30] [--devset DIR] [--no-simulated]

Results go to bench/results/signal_accuracy.json and a table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from services.common.config.loader import load_model
from services.common.config.scene import SceneConfig
from services.common.frames import Frame
from services.detector.evaluate_signal import SignalScore, score_signal
from services.detector.pipeline import DetectorPipeline
from simulators.feed import simulate_camera
from simulators.render import VARIANTS

CAMERA = "wuzhen-cam-01"
RESULTS = Path("bench/results/signal_accuracy.json")
START_TS_MS = 1_700_000_000_000
# Real clips are also scored pasted on a frame this size, where the detector decodes at 1/4
# scale: the same small heads on a wider camera's frame.
WIDE_WH = (1280, 720)


@dataclass(frozen=True, slots=True)
class SimulatedCase:
    variant: str
    resolution_wh: tuple[int, int]
    # wuzhen-cam-01's cycle: green 0-12 s, amber 12-15 s, red 15-25 s.
    signal_offset_s: float | None = None

    @property
    def name(self) -> str:
        width, height = self.resolution_wh
        start = "" if self.signal_offset_s is None else f" from {self.signal_offset_s:g} s"
        return f"sim {self.variant} {width}x{height}{start}"


def simulated_cases() -> list[SimulatedCase]:
    cases = [SimulatedCase(v, (640, 360)) for v in VARIANTS if not v.startswith("led")]
    cases += [
        SimulatedCase(variant, resolution_wh)
        for variant in ("led", "led_horizontal")
        for resolution_wh in ((1280, 720), (1920, 1080))
    ]
    cases += [
        SimulatedCase("led", (1920, 1080), signal_offset_s=19),
        SimulatedCase("day", (1280, 720), signal_offset_s=5),
    ]
    return cases


def held_states(scene: SceneConfig, frames: Iterable[Frame]) -> dict[int, str]:
    """The signal state the pipeline holds after each frame, by frame index."""
    pipeline = DetectorPipeline(scene)
    held = {}
    for frame in frames:
        pipeline.process(frame)
        held[frame.index] = pipeline.signal_state.value
    return held


def score_simulated(case: SimulatedCase, seconds: float, *, jpeg: bool) -> SignalScore:
    camera = simulate_camera(
        CAMERA,
        seconds=seconds,
        variant=case.variant,
        resolution_wh=case.resolution_wh,
        signal_offset_s=case.signal_offset_s,
    )
    held = held_states(camera.scene, camera.jpeg_frames(85) if jpeg else camera.frames())
    frames = sorted(held)
    return score_signal(
        [camera.light_state(i) for i in frames], [held[i] for i in frames], fps=camera.fps
    )


def video_frames(path: Path, camera_id: str, fps: float) -> Iterator[Frame]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"{path}: cannot open")
    try:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                return
            ts_ms = START_TS_MS + round(index * 1000 / fps)
            yield Frame(camera_id=camera_id, index=index, ts_ms=ts_ms, bgr=np.asarray(image))
            index += 1
    finally:
        capture.release()


def as_jpeg(frames: Iterable[Frame]) -> Iterator[Frame]:
    """The frames as a camera's feed would send them: JPEG, quality 85."""
    for frame in frames:
        assert frame.bgr is not None
        ok, data = cv2.imencode(".jpg", frame.bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError(f"frame {frame.index}: JPEG encoding failed")
        yield Frame(
            camera_id=frame.camera_id, index=frame.index, ts_ms=frame.ts_ms, jpeg=bytes(data)
        )


def on_wide_canvas(frames: Iterable[Frame]) -> Iterator[Frame]:
    """Each frame at the top left of a black 1280x720 picture (or wider/taller, if it is):
    the same lamp head in pixels, on a frame the detector decodes at 1/4 scale."""
    for frame in frames:
        assert frame.bgr is not None
        height, width = frame.bgr.shape[:2]
        canvas = np.zeros((max(height, WIDE_WH[1]), max(width, WIDE_WH[0]), 3), np.uint8)
        canvas[:height, :width] = frame.bgr
        yield Frame(camera_id=frame.camera_id, index=frame.index, ts_ms=frame.ts_ms, bgr=canvas)


def score_clip(folder: Path, *, jpeg: bool, wide: bool = False) -> SignalScore:
    scene = load_model(SceneConfig, folder / "scene.yaml")
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    frames = video_frames(folder / "clip.mp4", scene.camera_id, scene.fps)
    if wide:
        # The roi stays in the clip's pixels; the scene no longer states the frame size.
        scene = scene.model_copy(update={"resolution_wh": None})
        frames = on_wide_canvas(frames)
    held = held_states(scene, as_jpeg(frames) if jpeg else frames)
    truth: list[str | None] = [None] * len(held)
    for span in labels.get("signal", []):
        for i in range(span["first_frame"], min(span["last_frame"] + 1, len(held))):
            truth[i] = span["state"]
    return score_signal(truth, [held[i] for i in range(len(held))], fps=scene.fps)


def devset_clips(root: Path) -> list[Path]:
    wanted = ("clip.mp4", "scene.yaml", "labels.json")
    return sorted(p for p in root.iterdir() if all((p / name).is_file() for name in wanted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated footage per case")
    parser.add_argument("--devset", type=Path, help="a folder of labelled real clips")
    parser.add_argument("--no-simulated", action="store_true", help="score only the --devset clips")
    args = parser.parse_args()
    if args.devset is not None and not args.devset.is_dir():
        parser.error(f"--devset {args.devset}: not a folder")

    rows: list[dict[str, Any]] = []
    for case in track([] if args.no_simulated else simulated_cases(), description="simulated"):
        for jpeg in (True, False):
            score = score_simulated(case, args.seconds, jpeg=jpeg)
            rows.append({"clip": case.name, "input": "jpeg" if jpeg else "bgr", **score.to_dict()})
    if args.devset is not None:
        for folder in track(devset_clips(args.devset), description="devset"):
            name = f"real {folder.name}"
            for jpeg in (True, False):
                score = score_clip(folder, jpeg=jpeg)
                rows.append({"clip": name, "input": "jpeg" if jpeg else "bgr", **score.to_dict()})
            score = score_clip(folder, jpeg=True, wide=True)
            rows.append({"clip": name, "input": "jpeg on 1280x720", **score.to_dict()})

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "signal_accuracy", "rows": rows}, indent=2) + "\n")
    table = Table("clip", "input", "frames", "scored", "accuracy", "first known (s)")
    for row in rows:
        table.add_row(
            row["clip"],
            row["input"],
            str(row["frames"]),
            str(row["scored"]),
            f"{row['accuracy']:.1%}",
            "never" if row["first_known_s"] is None else f"{row['first_known_s']:.2f}",
        )
    console = Console()
    console.print(table)
    worst = min(rows, key=lambda r: r["accuracy"])
    console.print(
        f"{len(rows)} clips; lowest accuracy {worst['accuracy']:.1%} ({worst['clip']}, "
        f"{worst['input']}); wrote {RESULTS}"
    )


if __name__ == "__main__":
    main()
