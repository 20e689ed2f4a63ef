"""Benchmark the camera simulator: milliseconds per frame on one core, raw and JPEG-encoded.

    .venv/bin/python bench/simulate.py [--seconds 30] [--montage docs/img/variants.png]

Writes bench/results/simulate.json and prints a table. The goal is <= 2 ms per 1280x720
frame including JPEG encoding. ``--montage`` also draws one frame per variant into a PNG.
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


def measure(resolution_wh: tuple[int, int], *, seconds: float, jpeg: bool) -> dict[str, float]:
    """Render (and optionally encode) every frame of ``seconds`` of footage; time per frame."""
    camera = simulate_camera(CAMERA, seconds=seconds, resolution_wh=resolution_wh)
    # The background is drawn once per camera; a warm-up frame keeps that out of the timing.
    camera.render(0)
    start = time.perf_counter()
    for index in range(camera.n_frames):
        img = camera.render(index)
        if jpeg:
            cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    ms = (time.perf_counter() - start) * 1000 / camera.n_frames
    return {"ms_per_frame": round(ms, 3), "fps_per_core": round(1000 / ms, 1)}


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
        for jpeg in (False, True):
            result = measure((width, height), seconds=args.seconds, jpeg=jpeg)
            rows.append({"resolution": f"{width}x{height}", "jpeg": jpeg, **result})
    report = {
        "bench": "simulate",
        "camera": CAMERA,
        "jpeg_quality": JPEG_QUALITY,
        "seconds": args.seconds,
        "machine": platform.processor() or platform.machine(),
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    table = Table(title=f"simulator, {CAMERA}, one core")
    for column in ("resolution", "output", "ms/frame", "fps/core"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["resolution"],
            f"JPEG q{JPEG_QUALITY}" if row["jpeg"] else "raw BGR",
            f"{row['ms_per_frame']:.2f}",
            f"{row['fps_per_core']:.0f}",
        )
    Console().print(table)
    if args.montage:
        montage(args.montage)


if __name__ == "__main__":
    main()
