"""Cost of the evidence recorder: its per-camera frame ring and the panel sheets it writes.

Renders a simulated day feed at 1080p once, runs the detector over it once to get each
frame's result, then times ``EvidenceRecorder.observe`` over the same frames and results,
in the same run, against the detector's own time per frame:

* ``jpeg``: the frames as JPEG bytes (simulator, Kafka and MJPG feeds): the ring holds
  references to the bytes, nothing is decoded until a sheet is composed;
* ``bgr``: the frames decoded (what FFmpeg hands over for H.264 files): the ring keeps one
  JPEG-encoded frame every ``sample_ms`` and the newest few frames whole.

Reported per feed: CPU ms per frame (sheets included), that as a share of the detector's
time, the image bytes the ring holds at the end, and the sheets written. Results go to
bench/results/evidence.json and a table.

    .venv/bin/python bench/evidence.py [--seconds 20]
"""

from __future__ import annotations

import argparse
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

    table = Table("feed", "recorder ms/frame", "share of detector", "ring MiB", "sheets")
    for row in rows:
        table.add_row(
            str(row["feed"]),
            f"{row['recorder_ms_per_frame']:.3f}",
            f"{row['share_of_detector']:.1%}",
            f"{row['held_mib']:.1f}",
            str(row["sheets"]),
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
    with tempfile.TemporaryDirectory() as root:
        recorder = EvidenceRecorder(Path(root))
        started = time.process_time()
        for frame, result in zip(frames, results, strict=True):
            recorder.observe(scene, frame, result)
        recorder.close()
        ms = 1000 * (time.process_time() - started) / len(frames)
        return {
            "feed": feed,
            "recorder_ms_per_frame": round(ms, 3),
            "share_of_detector": round(ms / detector_ms, 4),
            "held_frames": recorder.held_frames(),
            "held_mib": round(recorder.held_bytes() / 2**20, 2),
            "sheets": recorder.sheets_written,
        }


if __name__ == "__main__":
    main()
