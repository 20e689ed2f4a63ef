"""What the lamp head's colour costs on JPEG frames, and what each way of getting it reads.

The detector decodes JPEG frames at reduced scale (1/2 at 640x360, 1/4 at 720p and 1080p).
Greyscale is the cheapest, but the signal reader wants colour. For each resolution it renders
a simulated feed of small LED heads with bloom (the ``led`` look; JPEG quality 85, as the feed
sends it) and times, per frame, on one core (CPU seconds, best of the passes):

* ``grey``: the reduced-scale greyscale decode alone (the hot path before the colour reader);
* ``colour``: the same scale decoded in colour, converted to the greyscale working image
  (what the detector does now);
* ``grey+full/N``: the greyscale decode, plus a full-resolution colour decode every N frames
  (colour every few frames);
* ``full``: a full-resolution colour decode every frame.

For each it also reports how often a single picture's reading of the roi (no smoothing) is
right, on the colour picture the option has (the greyscale one for ``grey``). Finally the
whole pipeline, in frames per CPU second, with the signal read (colour decode + reader) and
with the camera's signal left out of the scene (greyscale decode, no reading): that ratio is
what the colour reader costs the detector.

    .venv/bin/python bench/signal_colour.py [--seconds 10] [--passes 3] [--every 5]

Results go to bench/results/signal_colour.json and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from services.common.config.scene import SceneConfig
from services.common.frames import Frame
from services.detector.decode import reduction_for
from services.detector.pipeline import DetectorPipeline, DetectorSettings
from services.detector.signal import crop_head, read_lamp_head
from simulators.feed import simulate_camera

RESOLUTIONS = ((640, 360), (1280, 720), (1920, 1080))
CAMERA = "wuzhen-cam-01"
VARIANT = "led"
# Starts 4 s before amber, so that 10 s hold green, amber and red (green 12 s, amber 3 s).
SIGNAL_OFFSET_S = 8.0
RESULTS = Path("bench/results/signal_colour.json")

_GREY = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4}
_COLOUR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}


@dataclass(frozen=True, slots=True)
class Clip:
    frames: list[Frame]
    buffers: list[np.ndarray]
    truth: list[str | None]
    scene: SceneConfig
    reduction: int


def render(resolution_wh: tuple[int, int], seconds: float) -> Clip:
    camera = simulate_camera(
        CAMERA,
        seconds=seconds,
        seed=0,
        variant=VARIANT,
        resolution_wh=resolution_wh,
        signal_offset_s=SIGNAL_OFFSET_S,
    )
    frames = list(camera.jpeg_frames(quality=85))
    return Clip(
        frames=frames,
        buffers=[np.frombuffer(f.jpeg or b"", np.uint8) for f in frames],
        truth=[camera.light_state(f.index) for f in frames],
        scene=camera.scene,
        reduction=reduction_for(resolution_wh[0], min_working_width=320),
    )


# Each option turns frame i's JPEG buffer into the picture the signal is read from and that
# picture's size per source pixel.
Option = Callable[[int, np.ndarray], tuple[np.ndarray, float]]


def options(reduction: int, every: int) -> dict[str, Option]:
    def grey(_: int, buffer: np.ndarray) -> tuple[np.ndarray, float]:
        return np.asarray(cv2.imdecode(buffer, _GREY[reduction])), 1 / reduction

    def colour(_: int, buffer: np.ndarray) -> tuple[np.ndarray, float]:
        picture = np.asarray(cv2.imdecode(buffer, _COLOUR[reduction]))
        cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
        return picture, 1 / reduction

    def grey_plus_full(index: int, buffer: np.ndarray) -> tuple[np.ndarray, float]:
        working = np.asarray(cv2.imdecode(buffer, _GREY[reduction]))
        if index % every:
            return working, 1 / reduction
        return np.asarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)), 1.0

    def full(_: int, buffer: np.ndarray) -> tuple[np.ndarray, float]:
        return np.asarray(cv2.imdecode(buffer, cv2.IMREAD_COLOR)), 1.0

    return {"grey": grey, "colour": colour, f"grey+full/{every}": grey_plus_full, "full": full}


def decode_ms(clip: Clip, option: Option, passes: int) -> float:
    best = float("inf")
    for _ in range(passes):
        started = time.process_time()
        for index, buffer in enumerate(clip.buffers):
            option(index, buffer)
        best = min(best, time.process_time() - started)
    return 1000 * best / len(clip.buffers)


def reading_accuracy(clip: Clip, option: Option) -> float:
    """The share of frames whose single reading matches the truth."""
    light = clip.scene.traffic_light
    assert light is not None
    right = 0
    for index, (buffer, truth) in enumerate(zip(clip.buffers, clip.truth, strict=True)):
        picture, factor = option(index, buffer)
        head = crop_head(picture, roi_xywh=light.roi, factor=factor)
        right += read_lamp_head(head, layout=light.layout).state.value == truth
    return right / len(clip.buffers)


def pipeline_fps(clip: Clip, scene: SceneConfig, passes: int) -> float:
    best = 0.0
    for _ in range(passes):
        pipeline = DetectorPipeline(scene, settings=DetectorSettings())
        started = time.process_time()
        for frame in clip.frames:
            pipeline.process(frame)
        best = max(best, len(clip.frames) / (time.process_time() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="footage per resolution")
    parser.add_argument("--passes", type=int, default=3, help="best of N timed passes")
    parser.add_argument("--every", type=int, default=5, help="N of the grey+full/N option")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    console = Console()

    rows: list[dict[str, Any]] = []
    for width, height in RESOLUTIONS:
        clip = render((width, height), args.seconds)
        choices = options(clip.reduction, args.every)
        decode = {name: decode_ms(clip, o, args.passes) for name, o in choices.items()}
        accuracy = {name: reading_accuracy(clip, o) for name, o in choices.items()}
        no_light = clip.scene.model_copy(update={"traffic_light": None})
        with_signal = pipeline_fps(clip, clip.scene, args.passes)
        without = pipeline_fps(clip, no_light, args.passes)
        rows.append(
            {
                "resolution": f"{width}x{height}",
                "reduction": clip.reduction,
                "roi_wh": list(clip.scene.traffic_light.roi[2:])
                if clip.scene.traffic_light
                else None,
                "frames": len(clip.frames),
                "decode_ms": {k: round(v, 3) for k, v in decode.items()},
                "decode_ratio_vs_grey": {
                    k: round(v / decode["grey"], 2) for k, v in decode.items()
                },
                "single_reading_accuracy": {k: round(v, 3) for k, v in accuracy.items()},
                "pipeline_fps_with_signal": round(with_signal, 1),
                "pipeline_fps_without_signal": round(without, 1),
                "pipeline_ratio": round(with_signal / without, 3),
            }
        )
        console.print(f"{width}x{height} done")

    result = {
        "benchmark": "signal_colour",
        "camera": CAMERA,
        "variant": VARIANT,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "opencv": cv2.__version__,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    names = list(rows[0]["decode_ms"])
    decode_table = Table(
        "resolution", "roi px", *(f"{n} ms/frame" for n in names), title="JPEG decode"
    )
    reading_table = Table(
        "resolution", *names, title="single readings right (colour picture of each option)"
    )
    for row in rows:
        decode_table.add_row(
            str(row["resolution"]),
            "x".join(map(str, row["roi_wh"] or [])),
            *(f"{row['decode_ms'][n]:.2f} (x{row['decode_ratio_vs_grey'][n]:.2f})" for n in names),
        )
        reading_table.add_row(
            str(row["resolution"]), *(f"{row['single_reading_accuracy'][n]:.1%}" for n in names)
        )
    console.print(decode_table)
    console.print(reading_table)
    for row in rows:
        console.print(
            f"{row['resolution']}: pipeline {row['pipeline_fps_with_signal']} fps/core reading "
            f"the signal, {row['pipeline_fps_without_signal']} without "
            f"(x{row['pipeline_ratio']:.2f})"
        )
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
