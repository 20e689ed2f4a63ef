"""Local service processes: start detached with a PID file and a log, probe, stop.

Every process runs in its own session, so it outlives ``citybrain stack up`` and a Ctrl-C
in the terminal does not reach it. A PID file is trusted only while the process it names is
still the one we started (same PID and start time), so a recycled PID is never signalled.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One process of the stack: how to start it and how to tell that it is healthy."""

    name: str  # unique, e.g. detector-2
    role: str  # simulator, detector, dispatcher, control-center or prometheus
    argv: tuple[str, ...]
    health_url: str
    metrics_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PidRecord:
    pid: int
    create_time: float


class ProcessTable:
    """PID files under ``<dir>/pids`` and logs under ``<dir>/logs``, one per service name."""

    def __init__(self, directory: Path) -> None:
        self.pid_dir = directory / "pids"
        self.log_dir = directory / "logs"

    def pid_path(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def names(self) -> list[str]:
        """Services with a PID file, whatever the state of their process."""
        return sorted(p.stem for p in self.pid_dir.glob("*.pid"))

    def start(self, spec: ServiceSpec, *, cwd: Path) -> psutil.Process:
        """Start ``spec`` detached, appending its output to its log; returns the process."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(spec.name).open("ab") as log:
            log.write(
                f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: "
                f"{' '.join(spec.argv)}\n".encode()
            )
            log.flush()
            child = subprocess.Popen(
                spec.argv,
                cwd=cwd,
                env={**os.environ, **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = psutil.Process(child.pid)
        record = {"pid": child.pid, "create_time": process.create_time()}
        self.pid_path(spec.name).write_text(json.dumps(record) + "\n", encoding="utf-8")
        return process

    def process(self, name: str) -> psutil.Process | None:
        """The live process that ``name``'s PID file names, or None."""
        record = self._record(name)
        if record is None:
            return None
        try:
            process = psutil.Process(record.pid)
            if abs(process.create_time() - record.create_time) > 0.01:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            return None
        return process

    def _record(self, name: str) -> PidRecord | None:
        try:
            data = json.loads(self.pid_path(name).read_text(encoding="utf-8"))
            return PidRecord(pid=int(data["pid"]), create_time=float(data["create_time"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def stop(self, name: str, *, timeout_s: float) -> str:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; says which it took."""
        process = self.process(name)
        outcome = "not running"
        if process is not None:
            outcome = terminate(process, timeout_s=timeout_s)
        self.pid_path(name).unlink(missing_ok=True)
        return outcome


def terminate(process: psutil.Process, *, timeout_s: float) -> str:
    """Stop one process: SIGTERM, then SIGKILL after ``timeout_s``."""
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=timeout_s)
        return "stopped"
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        return f"killed after {timeout_s:.0f} s"
    except psutil.NoSuchProcess:
        return "stopped"


# What polling a service that is not up yet may raise. Besides refusals and timeouts: a free
# port in the ephemeral range can connect to itself (TCP simultaneous open, when the kernel
# picks that very port as the source), and the client reads its own request back as the
# reply (``http.client.BadStatusLine: GET /metrics HTTP/1.1``; seen once in `stack up`).
NOT_ANSWERING = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


def http_ok(url: str, *, timeout_s: float = 1.0) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except NOT_ANSWERING:
        return False


def http_text(url: str, *, timeout_s: float = 2.0) -> str | None:
    """The body of ``url`` as text, or None if it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status != 200:
                return None
            return bytes(response.read()).decode("utf-8", errors="replace")
    except NOT_ANSWERING:
        return None


def log_tail(path: Path, *, lines: int = 15) -> str:
    """The last lines of a log, for an error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def cpu_percent(process: psutil.Process | None) -> float | None:
    """CPU use since the previous call for this process (the first call starts the count)."""
    try:
        return process.cpu_percent(None) if process else None
    except psutil.Error:
        return None


def rss_bytes(process: psutil.Process | None) -> int | None:
    try:
        return int(process.memory_info().rss) if process else None
    except psutil.Error:
        return None
