"""How many cameras the local stack sustains, with 1 and with 2 detector replicas.

For each replica count it brings a stack up (``citybrain stack up``), then runs
``citybrain loadtest`` at rising camera counts until one is not sustained: achieved fps
at least 95% of offered, detector lag at the end of the load under two seconds of frames,
and end-to-end p99 under 1 s. Writes ``bench/results/stack_capacity.json`` and each run's
report beside it, and prints a table; the ratio of the two replica counts' capacities is
the scaling figure. Needs Kafka and Redis (``make infra-up``); ports come from the
environment like the tests' (KAFKA_PORT, REDIS_PORT). Long: about 3 minutes per step, as
the load generators render their frames ahead first.

    KAFKA_PORT=19092 REDIS_PORT=16379 nice .venv/bin/python bench/stack_capacity.py \\
        --cameras 30,40,50,60,70 --replicas 1,2 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _citybrain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _stack_file(replicas: int, *, resolution: str, fps: float, max_cameras: int) -> Path:
    path = ROOT / ".local" / f"stack_capacity_{replicas}.yaml"
    path.parent.mkdir(exist_ok=True)
    # Below Linux's ephemeral range (32768-60999): a port in it can be held by some client's
    # outgoing connection (in TIME_WAIT after a run), and a service then cannot listen on it.
    base = 28000 + 100 * replicas
    path.write_text(
        yaml.safe_dump(
            {
                # A new name each run: new consumer groups start at the live edge of a
                # `frames` topic that other runs on the same broker keep filling.
                "name": f"capacity-{replicas}-{int(time.time()) % 100_000}",
                "ports": {
                    "kafka": int(os.environ.get("KAFKA_PORT", "9092")),
                    "redis": int(os.environ.get("REDIS_PORT", "6379")),
                    "prometheus": base + 90,
                    "control_center": base + 80,
                    "detector_metrics": base + 10,
                    "dispatcher_metrics": base + 40,
                    "simulator_metrics": base + 50,
                },
                "fleet": {"cameras": max_cameras, "fps": fps, "resolution": resolution},
                "simulators": {"replicas": 1, "cameras": 0},
                "detectors": {"replicas": replicas},
            }
        )
    )
    return path


def _sustained(report: dict[str, Any]) -> bool:
    lag = sum(g["end_of_load"] for g in report["lag_messages"].values())
    p99 = report["e2e_latency_ms"].get("p99")
    return (
        report["achieved_fps"] >= 0.95 * report["offered_fps"]
        and lag <= 2 * report["offered_fps"]
        and p99 is not None
        and p99 < 1000
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", default="10,20,30,40,60")
    parser.add_argument("--replicas", default="1,2")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--fps", type=float, default=5)
    parser.add_argument("--resolution", default="1280x720")
    args = parser.parse_args()
    steps = [int(c) for c in args.cameras.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for replicas in (int(r) for r in args.replicas.split(",")):
        stack = _stack_file(
            replicas, resolution=args.resolution, fps=args.fps, max_cameras=max(steps)
        )
        up = _citybrain("stack", "up", "--file", str(stack))
        try:
            if up.returncode != 0:
                raise SystemExit(f"stack up failed:\n{up.stderr[-2000:]}")
            for cameras in steps:
                out = RESULTS / f"stack_capacity_{replicas}x{cameras}.json"
                run = _citybrain(
                    "loadtest", "--file", str(stack), "--cameras", str(cameras),
                    "--fps", f"{args.fps:g}", "--resolution", args.resolution,
                    "--seconds", f"{args.seconds:g}", "--json", str(out),
                )  # fmt: skip
                if run.returncode != 0:
                    raise SystemExit(f"loadtest failed:\n{run.stderr[-2000:]}")
                report = json.loads(out.read_text())
                ok = _sustained(report)
                rows.append({"replicas": replicas, "cameras": cameras, "sustained": ok,
                             "offered_fps": report["offered_fps"],
                             "achieved_fps": report["achieved_fps"],
                             "p99_ms": report["e2e_latency_ms"].get("p99"),
                             "lag_end": report["lag_messages"],
                             "processes": report["processes"],
                             "load_avg_1m": report["machine"]["load_avg_1m"]})  # fmt: skip
                print(json.dumps(rows[-1]["processes"]), file=sys.stderr)
                if not ok:
                    break
        finally:
            _citybrain("stack", "down", "--file", str(stack))
    capacity = {
        r: max((row["cameras"] for row in rows if row["replicas"] == r and row["sustained"]),
               default=0)
        for r in sorted({row["replicas"] for row in rows})
    }  # fmt: skip
    result = {"steps": rows, "capacity_cameras": capacity, "resolution": args.resolution,
              "fps": args.fps, "cpus": os.cpu_count()}  # fmt: skip
    (RESULTS / "stack_capacity.json").write_text(json.dumps(result, indent=2) + "\n")
    table = Table("replicas", "cameras", "offered fps", "achieved fps", "e2e p99 ms",
                  "sustained", "load avg", title="stack capacity")  # fmt: skip
    for row in rows:
        table.add_row(str(row["replicas"]), str(row["cameras"]), f"{row['offered_fps']:.0f}",
                      f"{row['achieved_fps']:.1f}", str(row["p99_ms"]), str(row["sustained"]),
                      f"{row['load_avg_1m']:.1f}")  # fmt: skip
    Console().print(table)
    if len(capacity) == 2:
        low, high = sorted(capacity)
        ratio = capacity[high] / capacity[low] if capacity[low] else float("nan")
        print(f"capacity {capacity}: {high} vs {low} replicas = {ratio:.2f}x")


if __name__ == "__main__":
    main()
