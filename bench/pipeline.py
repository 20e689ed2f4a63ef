"""Dispatcher throughput and end-to-end latency through the real Kafka broker and Redis.

Three phases, each on fresh topics, consumer groups and queue key prefixes:

* ``throughput``: N violations are published first, then one ``citybrain dispatch`` worker
  drains them. The rate is taken from the Redis server times of the first and last entry.
* ``floor``: a bare aiokafka loop consumes the same N messages and only writes them to Redis
  in the same batches (``append_many`` of ``batch.max_events``), then commits. The
  dispatcher's rate is reported as a share of it.
* ``latency``: once a worker has dispatched a few warm-up events (so it has joined its
  group), violations are offered at a steady rate (1,000/s, then 2,000/s); each entry's
  latency is its Redis write time (the stream id's milliseconds,
  from Redis' clock on this machine) minus the event's ``ts_ms`` stamped when published.

Needs ``make infra-up``. Writes bench/results/pipeline.json, prints a table and draws
docs/img/pipeline_latency.png.

    .venv/bin/python bench/pipeline.py [--events 50000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import redis
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from services.common.bus.kafka import KafkaBus
from services.common.events import ViolationEvent, ViolationType
from services.common.queue import DispatchedEntry, PendingEntry
from services.common.queue.redis_streams import RedisStreamsQueue
from services.dispatcher.config import load_dispatch_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pipeline.json"
PLOT = ROOT / "docs" / "img" / "pipeline_latency.png"
CAMERAS = ("wuzhen-cam-01", "wuzhen-cam-02", "wuzhen-cam-03", "wuzhen-cam-04", "hangzhou-cam-01")
RATES_PER_S = (1_000, 2_000)
# Warm-up events have track ids below 1,000,000, so no rate's latencies include them.
WARMUP_EVENTS = 100
METRICS_PORT = 16_166
DRAIN_TIMEOUT_S = 300
# Every event names a tracker run, as a detector's do, so the dispatcher keeps and checks
# each camera's recent sightings (one run: none is ever a handover twin).
TRACKER_EPOCH_MS = int(time.time() * 1000)


def violations(n: int, *, first_track: int = 0) -> list[ViolationEvent]:
    """``n`` distinct violations over the catalogued cameras, one track each (no grouping)."""
    now_ms = int(time.time() * 1000)
    return [
        ViolationEvent.create(
            violation_type=ViolationType.RED_LIGHT,
            camera_id=CAMERAS[i % len(CAMERAS)],
            city="hangzhou" if CAMERAS[i % len(CAMERAS)].startswith("hangzhou") else "wuzhen",
            frame=i,
            ts_ms=now_ms + i,
            track_id=first_track + i,
            bbox_xywh=(10, 20, 30, 40),
            confidence=0.9,
            tracker_epoch_ms=TRACKER_EPOCH_MS,
        )
        for i in range(n)
    ]


def publish(bus: KafkaBus, topic: str, events: list[ViolationEvent]) -> None:
    for event in events:
        bus.publish(topic, event.to_json(), key=event.camera_id.encode())
    bus.flush()


def publish_steady(bus: KafkaBus, topic: str, *, rate_per_s: int, seconds: float) -> int:
    """Offer violations at ``rate_per_s``, each stamped with its publish time; returns count."""
    total = int(rate_per_s * seconds)
    started = time.monotonic()
    for i in range(total):
        ahead = i / rate_per_s - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
        camera = CAMERAS[i % len(CAMERAS)]
        event = ViolationEvent.create(
            violation_type=ViolationType.RED_LIGHT,
            camera_id=camera,
            city="hangzhou" if camera.startswith("hangzhou") else "wuzhen",
            frame=i,
            ts_ms=int(time.time() * 1000),
            track_id=rate_per_s * 1_000_000 + i,
            bbox_xywh=(10, 20, 30, 40),
            confidence=0.9,
            tracker_epoch_ms=TRACKER_EPOCH_MS,
        )
        bus.publish(topic, event.to_json(), key=camera.encode())
    bus.flush()
    return total


class Entries:
    """The queue's stream records under one prefix, read straight from Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._r, self._prefix = client, prefix

    def _streams(self) -> list[str]:
        # The queue's own set of queue names: a SCAN would walk every key in Redis (millions
        # after a few runs), and polling with it loaded Redis while the worker wrote to it.
        names = self._r.smembers(f"{self._prefix}:queues")
        return [f"{self._prefix}:q:{name.decode()}" for name in names]

    def count(self) -> int:
        return sum(int(self._r.xlen(s)) for s in self._streams())

    def records(self) -> list[tuple[int, dict[str, Any]]]:
        """(Redis write ms, entry fields) for every record."""
        out = []
        for stream in self._streams():
            for entry_id, rec in self._r.xrange(stream):
                out.append((int(entry_id.split(b"-")[0]), json.loads(rec[b"d"])))
        return out

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.count() < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._prefix}: {self.count()} of {n} entries")
            time.sleep(0.2)

    def rate_per_s(self) -> float:
        """Entries per second between the first and the last write."""
        stamps = sorted(ms for ms, _ in self.records())
        return (len(stamps) - 1) / max(1e-3, (stamps[-1] - stamps[0]) / 1000)


class Worker:
    """One ``citybrain dispatch`` process on its own topic, group and prefix."""

    def __init__(self, *, bootstrap: str, redis_url: str, name: str) -> None:
        self._proc = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "citybrain"),
                "dispatch",
                f"--bus=kafka://{bootstrap}",
                f"--queue={redis_url}",
                f"--topic={name}",
                f"--group={name}",
                f"--queue-prefix={name}",
                f"--metrics-port={METRICS_PORT}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not self._serving():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError("the dispatcher did not start")
            time.sleep(0.3)

    @staticmethod
    def _serving() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        self._proc.send_signal(signal.SIGTERM)
        self._proc.wait(timeout=60)


def _as_entry(raw: bytes) -> DispatchedEntry:
    """A raw event as an entry, with the dispatch fields the floor does not compute."""
    event = ViolationEvent.model_validate_json(raw)
    return DispatchedEntry.enrich(event, district="floor", priority="normal", dispatched_ts_ms=0)


async def floor(*, bootstrap: str, redis_url: str, topic: str, prefix: str, n: int) -> None:
    """The bare loop: consume, append the same batches to Redis, commit. Nothing else."""
    config = load_dispatch_config()
    batch = config.batch.max_events
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=prefix,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # The dispatcher's own fetch wait, so that neither stalls on a long poll.
        fetch_max_wait_ms=round(config.consumer.fetch_max_wait_s * 1000),
    )
    queue = RedisStreamsQueue.from_url(redis_url, prefix=prefix)
    await consumer.start()
    try:
        done = 0
        while done < n:
            fetched = await consumer.getmany(timeout_ms=100, max_records=batch)
            entries = [
                PendingEntry(fields=(fields := _as_entry(r.value)), queue=fields.city)
                for records in fetched.values()
                for r in records
            ]
            if entries:
                await queue.append_many(entries)
                await consumer.commit()
                done += len(entries)
    finally:
        await consumer.stop()
        await queue.close()


def percentiles_ms(latencies_ms: np.ndarray) -> dict[str, float]:
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(latencies_ms.max()),
    }


def plot(latencies: dict[int, np.ndarray]) -> None:
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.linspace(0, max(float(np.percentile(v, 99.9)) for v in latencies.values()) * 1.1, 60)
    for rate, values in latencies.items():
        ax.hist(
            values,
            bins=bins,
            alpha=0.6,
            label=f"{rate:,}/s (p99 {np.percentile(values, 99):.0f} ms)",
        )
    ax.set_xlabel("detection ts_ms → entry written to Redis (ms)")
    ax.set_ylabel("entries")
    ax.set_yscale("log")
    ax.set_title("Dispatcher end-to-end latency at steady offered load (1 worker)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=50_000, help="events for throughput")
    parser.add_argument("--seconds", type=float, default=15, help="seconds per offered load")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    run = f"bench-pipeline-{uuid.uuid4().hex[:8]}"
    bus = KafkaBus(bootstrap_servers=args.bootstrap, client_id="bench-pipeline")
    client = redis.Redis.from_url(args.redis)
    console = Console()

    console.print(f"publishing {args.events:,} violations to {run}-tp ...")
    publish(bus, f"{run}-tp", violations(args.events))
    worker = Worker(bootstrap=args.bootstrap, redis_url=args.redis, name=f"{run}-tp")
    dispatched = Entries(client, f"{run}-tp")
    dispatched.wait_for(args.events)
    worker.stop()
    dispatcher_rate = dispatched.rate_per_s()

    bare = Entries(client, f"{run}-floor")
    asyncio.run(
        floor(
            bootstrap=args.bootstrap,
            redis_url=args.redis,
            topic=f"{run}-tp",
            prefix=f"{run}-floor",
            n=args.events,
        )
    )
    floor_rate = bare.rate_per_s()

    worker = Worker(bootstrap=args.bootstrap, redis_url=args.redis, name=f"{run}-lat")
    steady = Entries(client, f"{run}-lat")
    # The worker serves /metrics before it has joined its group and recovered its tables;
    # load offered before then would measure start-up as a backlog, not steady latency.
    publish(bus, f"{run}-lat", violations(WARMUP_EVENTS))
    steady.wait_for(WARMUP_EVENTS)
    latencies: dict[int, np.ndarray] = {}
    expected = WARMUP_EVENTS
    for rate in RATES_PER_S:
        console.print(f"offering {rate:,}/s for {args.seconds:.0f}s ...")
        expected += publish_steady(bus, f"{run}-lat", rate_per_s=rate, seconds=args.seconds)
        steady.wait_for(expected)
        latencies[rate] = np.array(
            [ms - f["ts_ms"] for ms, f in steady.records() if f["track_id"] // 1_000_000 == rate],
            dtype=float,
        )
    worker.stop()
    bus.close()

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "events": args.events,
        "batch_max_events": load_dispatch_config().batch.max_events,
        "dispatcher_events_per_s": round(dispatcher_rate),
        "floor_events_per_s": round(floor_rate),
        "share_of_floor": round(dispatcher_rate / floor_rate, 3),
        "latency_ms": {str(rate): percentiles_ms(v) for rate, v in latencies.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    plot(latencies)

    table = Table(title=f"dispatcher pipeline, 1 worker ({os.cpu_count()} CPUs shared)")
    for column in ("measure", "value", "goal"):
        table.add_column(column)
    table.add_row("dispatcher throughput", f"{dispatcher_rate:,.0f} events/s", "≥ 10,000/s")
    table.add_row("bare aiokafka → Redis floor", f"{floor_rate:,.0f} events/s", "")
    table.add_row("share of floor", f"{dispatcher_rate / floor_rate:.0%}", "≥ 50%")
    for rate, values in latencies.items():
        p = percentiles_ms(values)
        goal = "p99 < 100 ms" if rate == 2_000 else ""
        table.add_row(
            f"latency at {rate:,}/s",
            f"p50 {p['p50']:.0f} / p95 {p['p95']:.0f} / p99 {p['p99']:.0f} ms",
            goal,
        )
    console.print(table)
    console.print(f"wrote {RESULTS.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
