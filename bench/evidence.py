"""Cost of the evidence recorder: its per-camera frame ring and the panel sheets it writes.

Renders a simulated day feed at 1080p once, runs the detector over it once to get each
frame's result, then times ``EvidenceRecorder.observe`` over the same frames and results,
in the same run, against the detector's own time per frame:

* ``jpeg``: the frames as JPEG bytes (simulator, Kafka and MJPG feeds): the ring holds
  references to the bytes, nothing is decoded until a sheet is composed;
* ``bgr``: the frames decoded (what FFmpeg hands over for H.264 files): the ring keeps one
  JPEG-encoded frame every ``sample_ms`` and the newest few frames whole.

Reported per feed: the ring's CPU ms per frame (the same results with their events taken
out), that as a share of the detector's time, the image bytes the ring holds at the end, and
the CPU ms to compose and write one sheet (the whole recorder's extra time, per sheet).
Results go to bench/results/evidence.json and a table.

    .venv/bin/python bench/evidence.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from services.common.config.scene import SceneConfig
from services.common.frames import Frame
from services.detector.pipeline import DetectorPipeline
from services.detector.recorder import EvidenceRecorder
from services.detector.result import FrameResult
from simulators.feed import simulate_camera

CAMERA = "wuzhen-cam-01"
RESOLUTION_WH = (1920, 1080)
RESULTS = Path("bench/results/evidence.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="footage to replay")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    camera = simulate_camera(CAMERA, seconds=args.seconds, seed=0, resolution_wh=RESOLUTION_WH)
    frames = list(camera.jpeg_frames(quality=85))
    scene = camera.scene
    pipeline = DetectorPipeline(scene)
    started = time.process_time()
    results = [pipeline.process_frame(frame) for frame in frames]
    detector_ms = 1000 * (time.process_time() - started) / len(frames)

    decoded = [
        Frame(
            camera_id=f.camera_id,
            index=f.index,
            ts_ms=f.ts_ms,
            bgr=np.asarray(cv2.imdecode(np.frombuffer(f.jpeg or b"", np.uint8), cv2.IMREAD_COLOR)),
        )
        for f in frames
    ]
    rows = [
        _measure("jpeg", frames, results, scene, detector_ms),
        _measure("bgr", decoded, results, scene, detector_ms),
    ]
    result = {
        "benchmark": "evidence",
        "camera": CAMERA,
        "resolution": f"{RESOLUTION_WH[0]}x{RESOLUTION_WH[1]}",
        "frames": len(frames),
        "detector_ms_per_frame": round(detector_ms, 3),
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    table = Table(
        "feed", "ring ms/frame", "share of detector", "ring MiB", "sheets", "ms per sheet"
    )
    for row in rows:
        table.add_row(
            str(row["feed"]),
            f"{row['ring_ms_per_frame']:.3f}",
            f"{row['ring_share_of_detector']:.1%}",
            f"{row['held_mib']:.1f}",
            str(row["sheets"]),
            str(row["ms_per_sheet"]),
        )
    console = Console()
    console.print(table)
    console.print(
        f"1080p, {len(frames)} frames; detector {detector_ms:.2f} ms/frame; wrote {RESULTS}"
    )


def _measure(
    feed: str,
    frames: list[Frame],
    results: list[FrameResult],
    scene: SceneConfig,
    detector_ms: float,
) -> dict[str, Any]:
    """The ring's upkeep (the same results without their events), then the whole recorder;
    the difference, per sheet, is what composing and writing one sheet costs."""
    quiet = [dataclasses.replace(result, events=()) for result in results]
    ring_ms, recorder = _observe(frames, quiet, scene)
    total_ms, loud = _observe(frames, results, scene)
    sheets = loud.sheets_written
    return {
        "feed": feed,
        "ring_ms_per_frame": round(ring_ms, 3),
        "ring_share_of_detector": round(ring_ms / detector_ms, 4),
        "held_frames": recorder.held_frames(),
        "held_mib": round(recorder.held_bytes() / 2**20, 2),
        "sheets": sheets,
        "ms_per_sheet": round((total_ms - ring_ms) * len(frames) / sheets, 1) if sheets else None,
    }


def _observe(
    frames: list[Frame], results: list[FrameResult], scene: SceneConfig
) -> tuple[float, EvidenceRecorder]:
    with tempfile.TemporaryDirectory() as root:
        recorder = EvidenceRecorder(Path(root))
        started = time.process_time()
        for frame, result in zip(frames, results, strict=True):
            recorder.observe(scene, frame, result)
        recorder.close()
        return 1000 * (time.process_time() - started) / len(frames), recorder


if __name__ == "__main__":
    main()
