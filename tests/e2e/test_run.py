"""``citybrain run`` as a user starts it: a real process, real HTTP, stopped by SIGTERM."""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from services.control_center.operators import add_operator
from services.control_center.workflow import Role
from tests.ports import free_port

# Real-time cameras: a violation needs up to about a minute of simulated traffic.
WAIT_FOR_ENTRY_S = 120


def get(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as resp:
        body = resp.read().decode()
    return json.loads(body) if resp.headers.get_content_type() == "application/json" else body


def test_run_dispatches_violations_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    operators = tmp_path / "operators.yaml"
    token = add_operator(operators, "li.wei", Role.OPERATOR)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services",
            "run",
            "--port",
            str(port),
            "--resolution",
            "640x360",
            "--camera",
            "wuzhen-cam-02",
            "--camera",
            "hangzhou-cam-01",
            "--evidence-dir",
            str(tmp_path / "evidence"),
            "--operators",
            str(operators),
            "--seconds",
            str(WAIT_FOR_ENTRY_S + 30),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + WAIT_FOR_ENTRY_S
        entries: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not entries:
            time.sleep(2)
            try:
                entries = get(f"{base}/api/entries", token)["entries"]
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
        assert entries, "no violation reached the control-center queue"
        entry = entries[0]
        assert entry["status"] == "new"
        assert entry["district"] in {"xizha", "xihu"}
        assert entry["dispatched_ts_ms"] >= entry["ts_ms"]
        assert Path(entry["snapshot"]).is_file()
        # The panel sheet is named at once and written when its last frame has come.
        assert entry["evidence_panels"].endswith("-panels.jpg")

        metrics = get(f"{base}/metrics")
        assert "citybrain_dispatched_total" in metrics
        violations = [
            sample
            for family in text_string_to_metric_families(metrics)
            if family.name == "citybrain_violations"
            for sample in family.samples
            if sample.name == "citybrain_violations_total"
        ]
        # The contract's selector is by type; the series carry the city too.
        assert violations and all("type" in sample.labels for sample in violations)
        assert sum(sample.value for sample in violations) >= 1
        assert 'citybrain_frames_processed_total{camera_id="wuzhen-cam-02"}' in metrics
        promtool = shutil.which("promtool")
        assert promtool, "promtool is not installed (apt-get install prometheus)"
        lint = subprocess.run(
            [promtool, "check", "metrics"],
            input=metrics,
            capture_output=True,
            text=True,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    (summary,) = [line for line in output.splitlines() if line.startswith("citybrain run: ")]
    assert re.search(r"entries dispatched: [1-9]", summary), summary
    assert summary.endswith(f"evidence: {(tmp_path / 'evidence').resolve()}"), summary
