"""Fixtures for tests against the real Kafka broker and Redis.

The addresses come from the environment (as in faust's integration conftest):

- ``KAFKA_BOOTSTRAP`` ("host:port"), else ``127.0.0.1:$KAFKA_PORT`` (default 9092);
- ``REDIS_URL``, else ``redis://127.0.0.1:$REDIS_PORT/0`` (default 6379).

``make test`` starts both with ``make infra-up``. A missing broker is an error, not a skip:
the first integration test stops the session with a message saying how to start them.

Every test here is marked ``integration``. Tests share one broker and one Redis, so name
topics, consumer groups and keys after ``unique_name``. Reliability tests stop and restart
the real processes through ``restart_kafka`` / ``restart_redis`` or ``kafka_ctl`` /
``redis_ctl`` (``.stop()``, ``.start()``, ``.restart()``). Both keep their data across a
restart (Redis saves on stop and loads on start), and a service a test left stopped is
started again when the test ends.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import kafka.admin
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
HERE = Path(__file__).resolve().parent
CTL_TIMEOUT_S = 180
START_HINT = "start them with `make infra-up` (KAFKA_PORT / REDIS_PORT choose the ports)"


def _kafka_bootstrap() -> str:
    port = os.environ.get("KAFKA_PORT", "9092")
    return os.environ.get("KAFKA_BOOTSTRAP") or f"127.0.0.1:{port}"


def _redis_url() -> str:
    port = os.environ.get("REDIS_PORT", "6379")
    return os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{port}/0"


def _split_host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",", maxsplit=1)[0].strip()
    host, _, port = first.rpartition(":")
    return host, int(port)


def _kafka_problem(bootstrap: str) -> str | None:
    """None if the broker serves a metadata request, else why not."""
    host, port = _split_host_port(bootstrap)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"cannot connect to Kafka at {bootstrap}: {exc}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        try:
            admin = kafka.admin.KafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=10_000, client_id="it-probe"
            )
            try:
                admin.describe_cluster()
            finally:
                admin.close()
        except Exception as exc:  # any failure means the broker is not usable
            return f"Kafka at {bootstrap} does not answer: {type(exc).__name__}: {exc}"
        finally:
            logging.getLogger("kafka").setLevel(logging.NOTSET)
    return None


def _redis_problem(url: str) -> str | None:
    """None if Redis answers PING, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # any failure means Redis is not usable
        return f"Redis at {url} does not answer: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration ``integration``."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _require_infra() -> None:
    """Stop the whole session, as an error, when Kafka or Redis is not there."""
    problems = [p for p in (_kafka_problem(_kafka_bootstrap()), _redis_problem(_redis_url())) if p]
    if problems:
        pytest.exit(
            "integration infra missing: " + "; ".join(problems) + f"; {START_HINT}",
            returncode=pytest.ExitCode.INTERNAL_ERROR,
        )


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The broker address, e.g. ``"127.0.0.1:9092"``."""
    return _kafka_bootstrap()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL, e.g. ``"redis://127.0.0.1:6379/0"``."""
    return _redis_url()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A name no other test uses, for topics, groups, streams and key prefixes.

    Example: ``"it-test-dedup-after-restart-3f9a1c2b"``; append suffixes as needed.
    """
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    return f"it-{stem}-{uuid.uuid4().hex[:8]}"


@dataclass
class ServiceCtl:
    """Stops and starts one local service through ``scripts/<name>-ctl.sh``.

    ``stop()`` keeps the data (Kafka's log dirs), ``start()`` returns once the service
    answers again, and ``restart()`` does both.
    """

    script: Path
    env: dict[str, str]
    stopped: bool = False

    def _run(self, action: str) -> None:
        result = subprocess.run(
            [str(self.script), action],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CTL_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"{self.script.name} {action} failed:\n{result.stdout}{result.stderr}")

    def stop(self) -> None:
        self.stopped = True
        self._run("stop")

    def start(self) -> None:
        self._run("start")
        self.stopped = False

    def restart(self) -> None:
        self.stop()
        self.start()


def metrics_text(port: int) -> str:
    """What a process serves on ``/metrics`` at ``port``; empty while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


# How long a stop test waits for its process to be ready: a bound, not a timing it measures.
READY_S = 120


def sigterm_when_ready(
    args: list[str],
    log_path: Path,
    *,
    ready: Callable[[], bool],
    waiting_for: str,
    stop_s: float,
    then: Callable[[], None] = lambda: None,
) -> int:
    """Run ``citybrain ARGS`` (its output in ``log_path``) until ``ready()``, call ``then``
    (take a server away), send SIGTERM, and fail unless it exits within ``stop_s``.
    Returns its exit code."""
    log = log_path.open("w")
    # A file, not a pipe: a pipe nobody reads fills up with the clients' logs and blocks.
    proc = subprocess.Popen(
        [sys.executable, "-m", "services", *args], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + READY_S
        while not ready():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"{args[0]}: no sign of {waiting_for}"
            time.sleep(0.5)
        then()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=stop_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{args[0]} still running {stop_s} s after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return proc.returncode


def _local_port(host: str, port: int | None, what: str) -> int:
    if host not in {"127.0.0.1", "localhost"} or port is None:
        pytest.fail(f"{what} at {host}:{port} is not a local one this test can restart")
    return port


def _service_ctl(name: str, port_var: str, port: int) -> Iterator[ServiceCtl]:
    env = {**os.environ, port_var: str(port)}
    ctl = ServiceCtl(script=SCRIPTS / f"{name}-ctl.sh", env=env)
    yield ctl
    if ctl.stopped:
        ctl.start()


@pytest.fixture
def kafka_ctl(kafka_bootstrap: str) -> Iterator[ServiceCtl]:
    """Stop/start/restart the local broker; it is running again after the test."""
    host, port = _split_host_port(kafka_bootstrap)
    yield from _service_ctl("kafka", "KAFKA_PORT", _local_port(host, port, "Kafka"))


@pytest.fixture
def redis_ctl(redis_url: str) -> Iterator[ServiceCtl]:
    """Stop/start/restart the local Redis; its data is saved on stop and loaded on start."""
    parts = urlsplit(redis_url)
    port = _local_port(parts.hostname or "", parts.port or 6379, "Redis")
    yield from _service_ctl("redis", "REDIS_PORT", port)


@pytest.fixture
def restart_kafka(kafka_ctl: ServiceCtl) -> Callable[[], None]:
    """``restart_kafka()`` stops the broker (data kept) and returns once it serves again."""
    return kafka_ctl.restart


@pytest.fixture
def restart_redis(redis_ctl: ServiceCtl) -> Callable[[], None]:
    """``restart_redis()`` stops Redis (data saved) and returns once it answers PING again."""
    return redis_ctl.restart
