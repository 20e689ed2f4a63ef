"""``stack up``, ``down`` and ``status`` as plain steps; the CLI only prints what they return.

Kafka and Redis are started by the same scripts as ``make infra-up``; a broker or Redis that
already answered before ``up`` (``make test`` starts them itself) is used and left running
by ``down``. Everything else is a detached process with a PID file and a log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from kafka.admin import KafkaAdminClient, NewPartitions
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from services.common.bus import BusError, TopicSpec
from services.common.bus.kafka import KafkaBus
from services.common.config.catalogue import load_catalogue
from services.common.events import VIOLATIONS_TOPIC
from services.common.frames import FRAMES_TOPIC
from services.stack.config import StackConfig
from services.stack.fleet import write_fleet
from services.stack.plan import (
    HOST,
    REPO_ROOT,
    StackPaths,
    detector_group,
    local_dir,
    plan_services,
    scrape_targets,
)
from services.stack.processes import (
    ProcessTable,
    ServiceSpec,
    cpu_percent,
    http_ok,
    http_text,
    log_tail,
    rss_bytes,
)
from services.stack.prometheus import render_local_config

SCRIPTS = REPO_ROOT / "scripts"
LAG_METRIC = "citybrain_consumer_lag_messages"
Say = Callable[[str], None]


class StackError(RuntimeError):
    """The stack could not be brought up; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    role: str
    health_url: str
    metrics_url: str | None


@dataclass(frozen=True, slots=True)
class StackState:
    """What ``up`` leaves in ``state.json`` for ``status``, ``down`` and ``loadtest``."""

    stack_file: str
    owns_kafka: bool
    owns_redis: bool
    services: list[ServiceState]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> StackState | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                stack_file=data["stack_file"],
                owns_kafka=bool(data["owns_kafka"]),
                owns_redis=bool(data["owns_redis"]),
                services=[ServiceState(**s) for s in data["services"]],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _infra_env(config: StackConfig) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_PORT": str(config.ports.kafka),
        "REDIS_PORT": str(config.ports.redis),
    }


def _script(name: str, action: str, config: StackConfig) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / name), action],
        env=_infra_env(config),
        capture_output=True,
        text=True,
        check=False,
    )


def _start_infra(config: StackConfig, say: Say) -> tuple[bool, bool]:
    owned = []
    for script, what in (("redis-ctl.sh", "redis"), ("kafka-ctl.sh", "kafka")):
        already = _script(script, "status", config).returncode == 0
        if not already:
            say(f"starting {what}")
            done = _script(script, "start", config)
            if done.returncode != 0:
                raise StackError(f"{what} did not start:\n{done.stderr.strip()}")
        owned.append(not already)
    return owned[0], owned[1]


def _ensure_topics(config: StackConfig) -> None:
    """Create ``frames`` with the stack's partition count (growing it if it has fewer)."""
    bootstrap = f"{HOST}:{config.ports.kafka}"
    frames = TopicSpec(
        name=FRAMES_TOPIC.name,
        partitions=config.frames.partitions,
        retention_ms=FRAMES_TOPIC.retention_ms,
        max_message_bytes=FRAMES_TOPIC.max_message_bytes,
    )
    bus = KafkaBus(bootstrap_servers=bootstrap, client_id=f"{config.name}-stack")
    try:
        bus.ensure_topics([frames, VIOLATIONS_TOPIC])
        have = bus.partition_count(frames.name)
    except BusError as exc:
        raise StackError(str(exc)) from None
    if have < frames.partitions:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            try:
                admin.create_partitions({frames.name: NewPartitions(frames.partitions)})
            finally:
                admin.close()
        except KafkaError as exc:
            raise StackError(f"cannot grow {frames.name} to {frames.partitions}: {exc}") from None


def up(config: StackConfig, *, stack_file: Path, say: Say, timeout_s: float = 180) -> StackState:
    """Start everything that is not running yet; returns once every process is healthy."""
    paths = StackPaths.of(config)
    owns_kafka, owns_redis = _start_infra(config, say)
    previous = StackState.load(paths.state)
    if previous is not None:  # an earlier `up` that started them still owns them
        owns_kafka, owns_redis = (
            owns_kafka or previous.owns_kafka,
            owns_redis or previous.owns_redis,
        )
    say("writing the camera fleet")
    write_fleet(paths.fleet.root, cameras=config.fleet.cameras, fps=config.fleet.fps)
    _ensure_topics(config)
    base_ids = load_catalogue().camera_ids()
    specs = plan_services(config, paths, base_ids=base_ids)
    paths.prometheus_config.parent.mkdir(parents=True, exist_ok=True)
    paths.prometheus_config.write_text(render_local_config(scrape_targets(specs)), encoding="utf-8")
    paths.truth.mkdir(parents=True, exist_ok=True)
    table = ProcessTable(paths.root)
    state = StackState(
        stack_file=str(stack_file),
        owns_kafka=owns_kafka,
        owns_redis=owns_redis,
        services=[ServiceState(s.name, s.role, s.health_url, s.metrics_url) for s in specs],
    )
    state.save(paths.state)
    for spec in specs:
        if table.process(spec.name) is None:
            # Something else answering on the port would pass the health check for it.
            port = urlsplit(spec.health_url).port
            if port is not None and _port_open(port):
                raise StackError(
                    f"{spec.name}: port {port} is already taken by a process this stack did "
                    f"not start; change ports in {stack_file} or stop that process"
                )
            say(f"starting {spec.name}")
            table.start(spec, cwd=REPO_ROOT)
    _wait_healthy(specs, table, timeout_s=timeout_s, say=say)
    return state


def _wait_healthy(
    specs: list[ServiceSpec], table: ProcessTable, *, timeout_s: float, say: Say
) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(specs)
    while waiting:
        for spec in list(waiting):
            if table.process(spec.name) is None:
                tail = log_tail(table.log_path(spec.name))
                raise StackError(
                    f"{spec.name} exited during start-up; last lines of "
                    f"{table.log_path(spec.name)}:\n{tail}"
                )
            if http_ok(spec.health_url):
                say(f"{spec.name} healthy")
                waiting.remove(spec)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.name for s in waiting)
            raise StackError(f"not healthy after {timeout_s:.0f} s: {names}")
        if waiting:
            time.sleep(0.5)


STOP_ORDER = ("simulator", "detector", "control-center", "dispatcher", "prometheus")


def down(config: StackConfig, *, say: Say, timeout_s: float = 20) -> None:
    """Stop every process of the stack (producers first), then the infra it started."""
    paths = StackPaths.of(config)
    table = ProcessTable(paths.root)
    state = StackState.load(paths.state)
    roles = {s.name: s.role for s in state.services} if state else {}
    names = sorted(
        set(table.names()) | set(roles),
        key=lambda n: (
            STOP_ORDER.index(roles.get(n, n.rsplit("-", 1)[0]))
            if roles.get(n, n.rsplit("-", 1)[0]) in STOP_ORDER
            else len(STOP_ORDER),
            n,
        ),
    )
    for name in names:
        outcome = table.stop(name, timeout_s=timeout_s)
        if outcome != "not running":
            say(f"{name}: {outcome}")
    if state is not None:
        if not state.owns_kafka:
            _forget_frame_offsets(config, say)
        for owned, script, what in (
            (state.owns_kafka, "kafka-ctl.sh", "kafka"),
            (state.owns_redis, "redis-ctl.sh", "redis"),
        ):
            if owned:
                say(f"stopping {what}")
                _script(script, "stop", config)
                _script(script, "wipe", config)
        paths.state.unlink(missing_ok=True)


def _forget_frame_offsets(config: StackConfig, say: Say) -> None:
    """Delete the detectors' consumer group on a Kafka the stack keeps running.

    Frames are only worth detecting live: a stack brought up again later would otherwise
    resume at its old offsets and work through every frame sent meanwhile (by anyone, on a
    shared broker) before reaching the present. Without the group a new one starts at the
    live edge, minus the handover warm-up. The dispatchers' group is kept: violations
    waiting in Kafka are still owed to the control center.
    """
    group = detector_group(config)
    try:
        admin = KafkaAdminClient(bootstrap_servers=f"{HOST}:{config.ports.kafka}")
        try:
            admin.delete_groups([group])
        finally:
            admin.close()
        say(f"deleted consumer group {group}")
    except KafkaError as exc:
        say(f"kept consumer group {group}: {exc}")


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    name: str
    role: str
    pid: int | None
    healthy: bool
    cpu_percent: float | None
    rss_bytes: int | None
    lag_messages: float | None
    partitions: int | None


def infra_process(config: StackConfig, kind: str) -> psutil.Process | None:
    """The Kafka or Redis process that the infra scripts started for this stack's port."""
    port, default = (config.ports.kafka, 9092) if kind == "kafka" else (config.ports.redis, 6379)
    folder = kind if port == default else f"{kind}-{port}"
    try:
        return psutil.Process(int((local_dir() / folder / f"{kind}.pid").read_text().strip()))
    except (OSError, ValueError, psutil.Error):
        return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def lag_by_partition(metrics_text: str) -> dict[tuple[str, str, str], float]:
    """``(group, topic, partition) -> lag`` from one service's /metrics text."""
    lags: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != LAG_METRIC:
            continue
        for sample in family.samples:
            labels = sample.labels
            lags[
                (labels.get("group", ""), labels.get("topic", ""), labels.get("partition", ""))
            ] = sample.value
    return lags


def status(config: StackConfig) -> list[ProcessStatus]:
    """One row per process: infra first, then the services in start order."""
    paths = StackPaths.of(config)
    table = ProcessTable(paths.root)
    state = StackState.load(paths.state)
    rows: list[tuple[str, str, psutil.Process | None, bool, str | None]] = []
    for kind, port in (("kafka", config.ports.kafka), ("redis", config.ports.redis)):
        rows.append((kind, kind, infra_process(config, kind), _port_open(port), None))
    for service in state.services if state else []:
        process = table.process(service.name)
        healthy = process is not None and http_ok(service.health_url)
        rows.append((service.name, service.role, process, healthy, service.metrics_url))
    for _name, _role, process, _ok, _url in rows:
        cpu_percent(process)
    time.sleep(0.5)
    out: list[ProcessStatus] = []
    for name, role, process, healthy, url in rows:
        text = http_text(url) if url and healthy else None
        lags = lag_by_partition(text) if text else {}
        out.append(
            ProcessStatus(
                name=name,
                role=role,
                pid=process.pid if process else None,
                healthy=healthy,
                cpu_percent=cpu_percent(process),
                rss_bytes=rss_bytes(process),
                lag_messages=sum(lags.values()) if lags else None,
                partitions=len(lags) if lags else None,
            )
        )
    return out
