"""The dispatcher against the real broker and Redis: no loss, no duplicates, whatever happens.

Each test runs ``citybrain dispatch`` as a subprocess on its own topic, consumer group and
queue prefix, publishes violations (with duplicates and malformed messages mixed in), does
something unkind mid-stream, and then checks the queue holds exactly the distinct valid
violations, each once, and the dead-letter topic exactly the malformed messages.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import kafka
import pytest
import redis

from services.common.bus.kafka import KafkaBus
from services.common.events import ViolationEvent, ViolationType
from tests.events import make_event
from tests.integration.conftest import ServiceCtl
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# The active interpreter's console script: make honours an active virtualenv, not only .venv.
CITYBRAIN = str(Path(sys.executable).parent / "citybrain")
N_VALID = 5_000
CAMERAS = ("wuzhen-cam-01", "wuzhen-cam-02", "wuzhen-cam-04", "hangzhou-cam-01", "replay-cam-7")
MALFORMED = (
    b"\x00\xff garbage",
    b'{"schema": 1, "violation_id": "x", "frame": "12"}',
    b'{"schema": 9, "violation_id": "from-the-future"}',
    b"[]",
    b'{"huge": "' + b"x" * 200_000 + b'"}',
)


def _violations(n: int, *, ts_ms: int) -> list[ViolationEvent]:
    return [
        make_event(
            violation_type=ViolationType.RED_LIGHT if i % 3 else ViolationType.ILLEGAL_PARKING,
            camera_id=CAMERAS[i % len(CAMERAS)],
            city="hangzhou" if CAMERAS[i % len(CAMERAS)].startswith("hangzhou") else "wuzhen",
            frame=i,
            ts_ms=ts_ms + i,
            # One track per event: nothing is grouped, so every valid id is one entry.
            track_id=i,
        )
        for i in range(n)
    ]


@dataclass
class Workload:
    """The messages of one test, in publishing order, and what must come out."""

    messages: list[tuple[bytes, bytes]]
    valid_ids: set[str]
    malformed: int

    @classmethod
    def build(cls, *, n_valid: int = N_VALID, seed: int = 5) -> Workload:
        rng = random.Random(seed)
        events = _violations(n_valid, ts_ms=int(time.time() * 1000))
        messages = [(e.camera_id.encode(), e.to_json()) for e in events]
        # Duplicates: 10% of the events again, later in the stream.
        for e in rng.sample(events, n_valid // 10):
            messages.insert(
                rng.randrange(len(messages) // 2, len(messages)),
                (e.camera_id.encode(), e.to_json()),
            )
        malformed = [(b"bad", raw) for raw in MALFORMED * 20]
        for item in malformed:
            messages.insert(rng.randrange(len(messages)), item)
        return cls(messages, {e.violation_id for e in events}, len(malformed))


@dataclass
class Dispatcher:
    """One ``citybrain dispatch`` subprocess; start() again after a kill to restart it."""

    bootstrap: str
    redis_url: str
    name: str
    log_dir: Path
    topic: str = ""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        """Start the process and return once it serves /metrics (topics exist by then)."""
        self.starts += 1
        with (self.log_dir / f"dispatcher-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    CITYBRAIN,
                    "dispatch",
                    f"--bus=kafka://{self.bootstrap}",
                    f"--queue={self.redis_url}",
                    f"--topic={self.topic or self.name}",
                    f"--group={self.name}",
                    f"--queue-prefix={self.name}",
                    f"--metrics-port={self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        _wait_until(self._serving, timeout_s=60, what="the dispatcher to start", logs=self.logs)

    def _serving(self) -> bool:
        assert self.alive(), self.logs()
        try:
            return "citybrain_dispatched_total" in self.metrics()
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def metrics(self) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b"".join(iter(lambda: s.recv(65536), b""))
        return data.split(b"\r\n\r\n", 1)[1].decode()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.log_dir.glob("*.log"))
        )


@dataclass
class QueueProbe:
    """Reads the queue's Redis keys directly: every stream record, not just distinct ids."""

    client: redis.Redis
    prefix: str

    def _streams(self) -> Iterator[bytes]:
        # A big COUNT: the shared Redis holds other runs' keys, and SCAN's default of 10 keys
        # a call makes one poll take seconds, long enough for the stream to end before an
        # outage that should come mid-stream.
        return self.client.scan_iter(f"{self.prefix}:q:*", count=10_000)

    def violation_ids(self) -> list[str]:
        ids: list[str] = []
        for stream in self._streams():
            ids.extend(rec[b"v"].decode() for _, rec in self.client.xrange(stream))
        return ids

    def count(self) -> int:
        return sum(self.client.xlen(s) for s in self._streams())


def _dead_letters(
    bootstrap: str, topic: str, *, expect: int, timeout_s: float
) -> list[kafka.consumer.fetcher.ConsumerRecord]:
    consumer = kafka.KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3_000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            records.extend(consumer)
            if len(records) >= expect:
                break
    finally:
        consumer.close()
    return records


def _wait_until(
    check: Callable[[], bool], *, timeout_s: float, what: str, logs: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}\n{logs()}")


def _publish(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], rate: float | None
) -> None:
    bus = KafkaBus(bootstrap_servers=bootstrap, client_id="it-publisher")
    started = time.monotonic()
    for sent, (key, value) in enumerate(messages, start=1):
        bus.publish(topic, value, key=key)
        if rate is not None:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    bus.flush(timeout_s=180)
    bus.close()


class Publisher:
    """Publishes a workload at ``rate`` messages/s (None: as fast as it can).

    It runs in a child process: kafka-python leaks the sockets of connection attempts made
    while the broker is down, and the test process would report them as unraisable.
    """

    def __init__(self, bootstrap: str, topic: str, workload: Workload, rate: float | None) -> None:
        self._process = multiprocessing.get_context("spawn").Process(
            target=_publish, args=(bootstrap, topic, workload.messages, rate), daemon=True
        )

    def start(self) -> Publisher:
        self._process.start()
        return self

    def join(self, timeout_s: float) -> None:
        self._process.join(timeout_s)
        assert self._process.exitcode == 0, "publisher did not finish"
        self._process.close()


@pytest.fixture
def probe(redis_url: str, unique_name: str) -> Iterator[QueueProbe]:
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    yield QueueProbe(client, unique_name)
    client.close()


@pytest.fixture
def dispatcher(
    kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> Iterator[Dispatcher]:
    d = Dispatcher(kafka_bootstrap, redis_url, unique_name, tmp_path)
    yield d
    if d.alive():
        d.kill(signal.SIGTERM)


def _assert_exact(probe: QueueProbe, workload: Workload, d: Dispatcher) -> None:
    _wait_until(
        lambda: probe.count() >= len(workload.valid_ids),
        timeout_s=240,
        what="all entries",
        logs=d.logs,
    )
    time.sleep(3)  # anything extra would show up now
    ids = probe.violation_ids()
    assert len(ids) == len(set(ids)), "an entry was written twice"
    assert set(ids) == workload.valid_ids


def _assert_dead_letters(
    kafka_bootstrap: str, name: str, workload: Workload, *, exact: bool
) -> None:
    records = _dead_letters(kafka_bootstrap, f"{name}.dlq", expect=workload.malformed, timeout_s=60)
    sources = {dict(r.headers)["source"] for r in records}
    # Dead letters are at-least-once: after a crash one may be produced twice, and its
    # source header (topic/partition/offset) says it is the same one.
    assert len(sources) == workload.malformed
    if exact:
        assert len(records) == workload.malformed
    assert {dict(r.headers)["reason"] for r in records} >= {
        b"not_json",
        b"invalid",
        b"unknown_schema",
        b"too_large",
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_exactly_the_distinct_valid_violations_reach_the_queue(
    dispatcher: Dispatcher,
    probe: QueueProbe,
    kafka_bootstrap: str,
    redis_url: str,
    unique_name: str,
) -> None:
    workload = Workload.build()
    dispatcher.start()
    Publisher(kafka_bootstrap, unique_name, workload, rate=None).start().join(120)
    _assert_exact(probe, workload, dispatcher)
    _assert_dead_letters(kafka_bootstrap, unique_name, workload, exact=True)
    assert dispatcher.alive(), "garbage, huge or mistyped messages stopped the dispatcher"

    text = dispatcher.metrics()
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text.encode(), capture_output=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["citybrain_dispatched_total"] == N_VALID
    assert (
        values["citybrain_duplicates_dropped_total"]
        == len(workload.messages) - N_VALID - workload.malformed
    )
    assert values["citybrain_unknown_camera_total"] == N_VALID // len(CAMERAS)
    assert (
        sum(v for k, v in values.items() if k.startswith("citybrain_dead_lettered_total"))
        == workload.malformed
    )

    feed = subprocess.run(
        [CITYBRAIN, "feed", f"--queue={redis_url}", f"--queue-prefix={unique_name}", "--json"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    entries = [json.loads(line) for line in feed.stdout.splitlines()]
    assert {e["violation_id"] for e in entries} == workload.valid_ids
    assert [e["entry_id"] for e in entries] == sorted(
        (e["entry_id"] for e in entries), key=lambda i: tuple(map(int, i.split("-")))
    )
    assert all({"status", "district", "dispatched_ts_ms"} <= e.keys() for e in entries)
    assert {e["district"] for e in entries if e["camera_id"] == "replay-cam-7"} == {"unknown"}
    assert dispatcher.kill(signal.SIGTERM) == 0, "SIGTERM should stop the dispatcher cleanly"


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    dispatcher: Dispatcher, probe: QueueProbe, kafka_bootstrap: str, unique_name: str
) -> None:
    workload = Workload.build(seed=7)
    rng = random.Random(11)
    dispatcher.start()
    # Slow enough that the stream outlasts three kills and restarts (each restart waits out
    # the killed member's 10 s session), so every kill lands mid-stream.
    publisher = Publisher(kafka_bootstrap, unique_name, workload, rate=60).start()
    for _ in range(3):
        seen = probe.count()
        _wait_until(
            lambda seen=seen: probe.count() > seen,
            timeout_s=90,
            what="progress before a kill",
            logs=dispatcher.logs,
        )
        time.sleep(rng.uniform(0.5, 3.0))
        assert dispatcher.kill(signal.SIGKILL) == -signal.SIGKILL
        dispatcher.start()
    publisher.join(120)
    _assert_exact(probe, workload, dispatcher)
    _assert_dead_letters(kafka_bootstrap, unique_name, workload, exact=False)


def _outage_mid_stream(
    ctl: ServiceCtl, dispatcher: Dispatcher, probe: QueueProbe, kafka_bootstrap: str, name: str
) -> None:
    workload = Workload.build(seed=13)
    dispatcher.start()
    publisher = Publisher(kafka_bootstrap, name, workload, rate=400).start()
    _wait_until(
        lambda: probe.count() > N_VALID // 4,
        timeout_s=120,
        what="a quarter of the stream",
        logs=dispatcher.logs,
    )
    ctl.stop()
    time.sleep(5)
    ctl.start()
    publisher.join(240)
    _assert_exact(probe, workload, dispatcher)
    assert dispatcher.alive(), "the dispatcher should recover by itself"
    assert dispatcher.starts == 1


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_redis_restart_mid_stream(
    redis_ctl: ServiceCtl,
    dispatcher: Dispatcher,
    probe: QueueProbe,
    kafka_bootstrap: str,
    unique_name: str,
) -> None:
    _outage_mid_stream(redis_ctl, dispatcher, probe, kafka_bootstrap, unique_name)
    assert _metric(dispatcher.metrics(), "citybrain_redis_write_retries_total") >= 1


# The contract: a stop is honoured within a few seconds, even with Redis away.
STOP_S = 10


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_with_redis_down_stops_at_once_and_loses_nothing(
    redis_ctl: ServiceCtl,
    dispatcher: Dispatcher,
    probe: QueueProbe,
    kafka_bootstrap: str,
    unique_name: str,
) -> None:
    workload = Workload.build(n_valid=500, seed=17)
    dispatcher.start()
    redis_ctl.stop()
    Publisher(kafka_bootstrap, unique_name, workload, rate=None).start().join(120)
    _wait_until(
        lambda: _metric(dispatcher.metrics(), "citybrain_redis_write_retries_total") >= 1,
        timeout_s=120,
        what="a write to the stopped Redis to be retried",
        logs=dispatcher.logs,
    )
    assert dispatcher.proc is not None
    dispatcher.proc.send_signal(signal.SIGTERM)
    try:
        returncode = dispatcher.proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_S} s after SIGTERM with Redis down\n{dispatcher.logs()}")
    assert returncode == 0, dispatcher.logs()
    # What was being written when it stopped was not committed: the next worker gets it.
    redis_ctl.start()
    dispatcher.start()
    _assert_exact(probe, workload, dispatcher)


def _metric(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text; fails if it is not there."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not in the metrics"
    return float(match[1])


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_kafka_restart_mid_stream(
    kafka_ctl: ServiceCtl,
    dispatcher: Dispatcher,
    probe: QueueProbe,
    kafka_bootstrap: str,
    unique_name: str,
) -> None:
    _outage_mid_stream(kafka_ctl, dispatcher, probe, kafka_bootstrap, unique_name)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_scaling_out_and_in_mid_stream_loses_and_duplicates_nothing(
    probe: QueueProbe, kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    """Two workers in one group: a second joins mid-stream, then the first stops.

    Each change is a rebalance: partitions, with the messages fetched for them and not yet
    written, move from one worker to the other, and the table state follows them.
    """
    workload = Workload.build(seed=17)
    first, second = (
        Dispatcher(kafka_bootstrap, redis_url, unique_name, tmp_path / name)
        for name in ("first", "second")
    )
    for d in (first, second):
        d.log_dir.mkdir()

    def logs() -> str:
        return first.logs() + second.logs()

    first.start()
    publisher = Publisher(kafka_bootstrap, unique_name, workload, rate=300).start()
    try:
        _wait_until(lambda: probe.count() > N_VALID // 5, timeout_s=120, what="a fifth", logs=logs)
        second.start()
        _wait_until(lambda: probe.count() > N_VALID // 2, timeout_s=120, what="half", logs=logs)
        assert first.kill(signal.SIGTERM) == 0
        publisher.join(240)
        _assert_exact(probe, workload, second)
        _assert_dead_letters(kafka_bootstrap, unique_name, workload, exact=False)
        assert second.alive()
    finally:
        for d in (first, second):
            if d.alive():
                d.kill(signal.SIGTERM)


VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not VTEST.is_file(), reason="needs apt's opencv-doc (vtest.avi)")
def test_replayed_violations_reach_the_feed(
    dispatcher: Dispatcher, kafka_bootstrap: str, redis_url: str, unique_name: str, tmp_path: Path
) -> None:
    events_path = tmp_path / "events.jsonl"
    subprocess.run(
        [
            CITYBRAIN,
            "replay",
            str(VTEST),
            f"--scene={ROOT / 'tests' / 'data' / 'vtest-scene.yaml'}",
            f"--events={events_path}",
            f"--bus=kafka://{kafka_bootstrap}",
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    replayed = [json.loads(line) for line in events_path.read_text().splitlines()]
    assert replayed, "the replay found no violations to dispatch"
    # replay publishes to the shared `violations` topic; this test's group reads all of it.
    dispatcher.topic = "violations"
    dispatcher.start()

    def groups(events: list[dict[str, object]]) -> set[tuple[object, ...]]:
        return {(e["camera_id"], e["type"], e["track_id"]) for e in events}

    def feed() -> list[dict[str, object]]:
        out = subprocess.run(
            [CITYBRAIN, "feed", f"--queue={redis_url}", f"--queue-prefix={unique_name}", "--json"],
            capture_output=True,
            check=True,
            timeout=120,
        )
        return [json.loads(line) for line in out.stdout.splitlines()]

    # A violation is either an entry of its own or a repeat counted on its vehicle's entry.
    _wait_until(
        lambda: groups(replayed) <= groups(feed()),
        timeout_s=120,
        what="the replayed violations in the feed",
        logs=dispatcher.logs,
    )
    entries = feed()
    assert len(groups(entries)) == len(entries), "one entry per vehicle, camera and type"
    assert all(e["status"] == "new" and "dispatched_ts_ms" in e for e in entries)
