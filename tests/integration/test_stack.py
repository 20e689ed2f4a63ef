"""``citybrain stack up``, a load test with a detector killed mid-run, and ``stack down``.

The stack runs on the Kafka and Redis that ``make test`` started (their ports from the
environment) and leaves them running; everything else (Prometheus, two detectors, a
dispatcher, the control center when this build has it) is its own process on free ports.
The stack's own simulator streams one camera; the load
test adds 4 more (640x360, 5 fps), small enough that a shared 2-core machine keeps up;
what is checked is correctness, never speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services.observability.queries import queried_series_names
from services.stack.config import load_stack_config
from services.stack.plan import StackPaths
from services.stack.processes import ProcessTable
from services.stack.runner import StackState
from tests.ports import free_port_block

ROOT = Path(__file__).resolve().parents[2]
# Metric names the stack promises whatever the dashboards query.
STACK_METRICS = {
    "citybrain_consumer_lag_messages",
    "citybrain_frames_processed_total",
    "citybrain_camera_frames_published_total",
    "citybrain_dispatched_total",
    "citybrain_violations_total",
}
# The load's traffic is the same in every run, so that what this test checks is the stack (a
# detector killed, its cameras moved), not how the detector fares on a random street. With
# this seed a car comes in over the picture's edge where another just drove out, which once
# cost a parking violation (README, "A track id taken over at the picture's edge"); every
# violation is found offline, each by a track of its own.
SEED = 62126
TYPE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}


def _citybrain(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Prometheus, the control center, then three ports for each replicated role (the
    # simulators' range also serves the load test's generators).
    base = free_port_block(16)
    path = tmp_path_factory.mktemp("stack") / "stack.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": f"it-{uuid.uuid4().hex[:8]}",
                "ports": {
                    "kafka": int(os.environ.get("KAFKA_PORT", "9092")),
                    "redis": int(os.environ.get("REDIS_PORT", "6379")),
                    "prometheus": base,
                    "control_center": base + 1,
                    "detector_metrics": base + 2,
                    "dispatcher_metrics": base + 5,
                    "simulator_metrics": base + 8,
                },
                "fleet": {"cameras": 12, "fps": 5, "resolution": "640x360"},
                "simulators": {"replicas": 1, "cameras": 1},
                "detectors": {"replicas": 2, "handover_warmup_s": 30, "session_timeout_s": 6},
                "dispatchers": {"replicas": 1},
                "frames": {"partitions": 12},
            }
        ),
        encoding="utf-8",
    )
    up = _citybrain("stack", "up", "--file", str(path), timeout_s=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield path
    finally:
        down = _citybrain("stack", "down", "--file", str(path), timeout_s=120)
        assert down.returncode == 0, down.stderr[-3000:]
        config = load_stack_config(path)
        table = ProcessTable(StackPaths.of(config).root)
        assert table.names() == [], "stack down left PID files behind"


@pytest.fixture(scope="module")
def load_report(stack_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("loadtest") / "report.json"
    run = _citybrain(
        "loadtest", "--file", str(stack_file), "--cameras", "4", "--fps", "5",
        "--resolution", "640x360", "--seconds", "60", "--kill", "detector@20",
        "--seed", str(SEED), "--json", str(out), timeout_s=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert out.with_suffix(".png").stat().st_size > 10_000
    report: dict[str, object] = json.loads(out.read_text(encoding="utf-8"))
    return report


def test_a_killed_detector_loses_nothing_outside_the_handover(
    load_report: dict[str, object],
) -> None:
    violations = load_report["violations"]
    kill = load_report["kill"]
    assert isinstance(violations, dict) and isinstance(kill, dict)
    assert violations["expected"] > 0 and violations["found"] > 0
    # With the kill and the scored window, so that a failure tells a handover from a miss.
    # As text: pytest would shorten a dict, and cut the moved cameras off.
    context = json.dumps({"kill": kill, "window_ms": load_report["scored_window_ms"]})
    assert violations["duplicated"] == 0, f"{load_report['duplicated']} {context}"
    assert violations["lost"] == 0, f"{load_report['lost']} {context}"
    assert kill["cameras_moved"] > 0, "the kill must hand cameras over"
    assert kill["cameras_resumed"] == kill["cameras_moved"] == len(kill["moved"]), kill
    for key in ("offered_fps", "achieved_fps", "violation_to_entry_ms", "processes", "timeline"):
        assert key in load_report
    latency = load_report["e2e_latency_ms"]
    assert isinstance(latency, dict)
    assert set(latency["by_type"]) <= {"red_light", "illegal_parking"}
    assert all("p99" in figures for figures in latency["by_type"].values())


def _exported(stack_file: Path) -> set[str]:
    """Every series name the live services declare, as ``/metrics`` writes samples: a
    labelled counter that has not counted yet declares its family (``# TYPE``) only."""
    state = StackState.load(StackPaths.of(load_stack_config(stack_file)).state)
    assert state is not None
    names: set[str] = set()
    for service in state.services:
        if service.metrics_url:
            try:
                with urllib.request.urlopen(service.metrics_url, timeout=5) as response:
                    text = response.read().decode()
            except OSError:  # the detector the load test killed
                continue
            for line in text.splitlines():
                if line.startswith("# TYPE citybrain_"):
                    _, _, name, kind = line.split()
                    names |= {name, *(name + s for s in TYPE_SUFFIXES.get(kind, ()))}
                elif line.startswith("citybrain_"):
                    names.add(line.split("{")[0].split(" ")[0])
    return names


def test_every_metric_the_dashboards_and_alerts_query_is_exported(
    stack_file: Path, load_report: dict[str, object]
) -> None:
    # After the load test every labelled series has been created at least once.
    exported = _exported(stack_file)
    wanted = set(queried_series_names()) | STACK_METRICS
    missing = sorted(wanted - exported)
    assert missing == [], f"queried but not exported: {missing}"


def test_prometheus_scrapes_every_service(stack_file: Path) -> None:
    config = load_stack_config(stack_file)
    url = f"http://127.0.0.1:{config.ports.prometheus}/api/v1/targets"
    with urllib.request.urlopen(url, timeout=5) as response:
        targets = json.load(response)["data"]["activeTargets"]
    up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
    assert {"detector", "dispatcher", "simulator"} <= up
