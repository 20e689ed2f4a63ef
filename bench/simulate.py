"""Benchmark the camera simulator: milliseconds per frame on one core, raw and JPEG-encoded.

    .venv/bin/python bench/simulate.py [--seconds 30] [--montage docs/img/variants.png]

Writes bench/results/simulate.json and prints a table. Three ways to make each frame:
raw BGR (drawing only), drawing plus plain ``cv2.imencode`` of the whole frame, and the
simulator's own JPEG path (``SimulatedCamera.jpeg_frame``: only what differs from the
background is drawn and encoded, spliced into the background's JPEG). The goal is <= 1 ms
per 1280x720 JPEG frame, and the ratio to plain ``cv2.imencode`` in the same run shows the
gain on any machine. ``--montage`` also draws one frame per variant into a PNG.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from simulators.feed import VARIANTS, simulate_camera

RESULTS = Path(__file__).resolve().parent / "results" / "simulate.json"
RESOLUTIONS = ((640, 360), (1280, 720), (1920, 1080))
CAMERA = "wuzhen-cam-01"  # the busiest intersection: the most sprites per frame
JPEG_QUALITY = 85
GOAL_MS = 1.0
OUTPUT_NAMES = {"raw": "raw BGR", "imencode": "cv2.imencode", "spliced": "spliced JPEG"}


MODES = ("raw", "imencode", "spliced")


def measure(resolution_wh: tuple[int, int], *, seconds: float, mode: str) -> dict[str, float]:
    """Make every frame of ``seconds`` of footage in ``mode`` (see ``MODES``); time per frame."""
    camera = simulate_camera(CAMERA, seconds=seconds, resolution_wh=resolution_wh)
    # The background (and its JPEG) is made once per camera; a warm-up frame keeps that out.
    camera.render(0)
    camera.jpeg_frame(0, JPEG_QUALITY)
    start, start_cpu = time.perf_counter(), time.process_time()
    for index in range(camera.n_frames):
        if mode == "spliced":
            camera.jpeg_frame(index, JPEG_QUALITY)
            continue
        img = camera.render(index)
        if mode == "imencode":
            cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    ms = (time.perf_counter() - start) * 1000 / camera.n_frames
    # CPU time is what the frames cost the cores; on a shared machine the wall time also
    # counts the waits for a core that other processes hold.
    cpu_ms = (time.process_time() - start_cpu) * 1000 / camera.n_frames
    return {
        "ms_per_frame": round(ms, 3),
        "cpu_ms_per_frame": round(cpu_ms, 3),
        "fps_per_core": round(1000 / cpu_ms, 1),
    }


def montage(path: Path) -> None:
    """One labelled 480x270 tile per variant, plus a night street, in a 4-wide grid."""
    shots = [("wuzhen-cam-01", v, 172) for v in VARIANTS] + [("hangzhou-cam-03", "night", 380)]
    tiles = []
    for camera_id, variant, frame in shots:
        camera = simulate_camera(camera_id, seconds=frame / 10 + 1, variant=variant)
        tile = cv2.resize(camera.render(frame), (480, 270), interpolation=cv2.INTER_AREA)
        label = f"{camera_id} {variant}"
        cv2.putText(tile, label, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 4)
        cv2.putText(tile, label, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        tiles.append(tile)
    rows = [np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="footage per measurement")
    parser.add_argument("--montage", type=Path, help="also write a PNG of every variant here")
    args = parser.parse_args()
    # Per-core figures: OpenCV must not spread one frame over several threads.
    cv2.setNumThreads(1)
    rows = []
    for width, height in RESOLUTIONS:
        by_mode = {m: measure((width, height), seconds=args.seconds, mode=m) for m in MODES}
        plain_ms = by_mode["imencode"]["cpu_ms_per_frame"]
        for mode, result in by_mode.items():
            ratio = round(result["cpu_ms_per_frame"] / plain_ms, 3)
            rows.append({"resolution": f"{width}x{height}", "mode": mode, **result, "ratio": ratio})
    spliced_720p = next(r for r in rows if r["resolution"] == "1280x720" and r["mode"] == "spliced")
    report = {
        "bench": "simulate",
        "camera": CAMERA,
        "jpeg_quality": JPEG_QUALITY,
        "seconds": args.seconds,
        "machine": platform.processor() or platform.machine(),
        "goal_ms_per_720p_jpeg": GOAL_MS,
        "goal_met": spliced_720p["cpu_ms_per_frame"] <= GOAL_MS,
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    table = Table(title=f"simulator, {CAMERA}, one core, JPEG q{JPEG_QUALITY}")
    for column in (
        "resolution",
        "output",
        "CPU ms/frame",
        "wall ms/frame",
        "fps/core",
        "CPU vs imencode",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["resolution"],
            OUTPUT_NAMES[row["mode"]],
            f"{row['cpu_ms_per_frame']:.2f}",
            f"{row['ms_per_frame']:.2f}",
            f"{row['fps_per_core']:.0f}",
            f"{row['ratio']:.2f}x",
        )
    Console().print(table)
    if args.montage:
        montage(args.montage)


if __name__ == "__main__":
    main()
