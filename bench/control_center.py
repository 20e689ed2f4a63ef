"""The control center under its operators' load, and the Redis memory an entry costs.

Two phases against a real Redis (``make infra-up``), each on a fresh key prefix:

* ``memory``: N entries are appended (as the dispatcher does, in batches); Redis'
  ``used_memory`` before and after gives the bytes per open entry, and so what a million
  open entries need. Then R rounds append N more, close them and run retention into a
  SQLite archive: ``used_memory`` after each round shows whether Redis stays flat.
* ``load``: ``citybrain control-center`` runs as its own process on 127.0.0.1. First the
  baseline: API requests (``GET /api/entries``) with no dashboard open and nothing written.
  Then D dashboards hold ``GET /api/stream`` open while entries are appended at a steady
  rate and the same API requests go on: the API's latency, and for every dashboard the
  delay from an entry's append to its ``event: entry`` (each violation id carries the time
  it was appended). Everything is bounded in count and time.

Writes bench/results/control_center.json and prints a table.

    .venv/bin/python bench/control_center.py [--dashboards 50] [--rate 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import redis
from rich.console import Console
from rich.table import Table

from services.common.queue import DispatchedEntry, EntryStatus, PendingEntry, open_queue
from services.common.queue.archive import SQLiteArchive
from services.control_center.operators import add_operator
from services.control_center.retention import archive_closed
from services.control_center.workflow import Role

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "control_center.json"
BATCH = 500
# Requests per second of the API probe, and how long the idle baseline runs.
API_RPS = 20
BASELINE_S = 5.0
console = Console()


def fields(n: int, *, city: str = "wuzhen", violation_id: str | None = None) -> DispatchedEntry:
    """A dispatched entry of typical size (a catalogued camera, a snapshot path)."""
    camera = f"{city}-cam-0{n % 4 + 1}"
    ts_ms = 1_700_000_000_000 + n
    return DispatchedEntry.model_validate(
        {
            "violation_id": violation_id or f"{camera}:red_light:{n:06d}:{ts_ms}",
            "type": "red_light" if n % 3 else "illegal_parking",
            "camera_id": camera,
            "city": city,
            "frame": n,
            "ts_ms": ts_ms,
            "track_id": n,
            "bbox_xywh": [512, 280, 64, 116],
            "confidence": 0.93,
            "snapshot": f"evidence/{camera}/{camera}_red_light_{n:06d}_{ts_ms}.jpg",
            "district": "xizha",
            "location": "Ziyi Road / Longxiang Avenue",
            "lat": 30.7441,
            "lon": 120.4869,
            "unit": "Tongxiang Traffic Police, Wuzhen Brigade",
            "priority": "high",
            "dispatched_ts_ms": ts_ms + 40,
        },
        strict=False,
    )


def redis_url() -> str:
    port = os.environ.get("REDIS_PORT", "6379")
    return os.environ.get("REDIS_URL") or f"redis://127.0.0.1:{port}/0"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    arr = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(arr, 50)), 2),
        "p95": round(float(np.percentile(arr, 95)), 2),
        "p99": round(float(np.percentile(arr, 99)), 2),
    }


# ---- memory ----------------------------------------------------------------------------


async def append_n(url: str, prefix: str, start: int, n: int) -> list[str]:
    queue = open_queue(url, prefix=prefix, pool_size=2)
    ids = []
    try:
        for first in range(start, start + n, BATCH):
            batch = [
                PendingEntry(fields(i, city="wuzhen" if i % 2 else "hangzhou"), queue="city")
                for i in range(first, min(first + BATCH, start + n))
            ]
            await queue.append_many(batch)
            ids += [p.fields.violation_id for p in batch]
    finally:
        await queue.close()
    return ids


async def close_and_archive(url: str, prefix: str, ids: list[str], archive: SQLiteArchive) -> int:
    queue = open_queue(url, prefix=prefix, pool_size=8)
    try:
        for first in range(0, len(ids), 100):
            await asyncio.gather(
                *(
                    queue.set_status(vid, EntryStatus.RESOLVED, operator="bench", ts_ms=1)
                    for vid in ids[first : first + 100]
                )
            )
        return await archive_closed(queue, archive, before_ms=2, batch=BATCH)
    finally:
        await queue.close()


def memory_phase(url: str, *, entries: int, rounds: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    prefix = f"bench-cc-mem-{uuid.uuid4().hex[:8]}"

    def used() -> int:
        return int(client.info("memory")["used_memory"])

    before = used()
    asyncio.run(append_n(url, prefix, 0, entries))
    after = used()
    per_entry = (after - before) / entries
    series = [after]
    with tempfile.TemporaryDirectory() as tmp:
        archive = SQLiteArchive(Path(tmp) / "archive.sqlite")
        next_n = entries
        for _ in range(rounds):
            ids = asyncio.run(append_n(url, prefix, next_n, entries))
            next_n += entries
            asyncio.run(close_and_archive(url, prefix, ids, archive))
            series.append(used())
        archived = asyncio.run(archive.count())
        archive.close()
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()
    return {
        "entries": entries,
        "bytes_per_open_entry": round(per_entry),
        "gib_per_million_open_entries": round(per_entry * 1e6 / 2**30, 2),
        "retention_rounds": rounds,
        "archived": archived,
        "used_memory_after_each_round": series,
        "growth_over_rounds_bytes": series[-1] - series[0],
    }


# ---- load ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(
    url: str, prefix: str, operators: Path, archive: Path
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    config = archive.parent / "cc.yaml"
    config.write_text(f"retention:\n  archive: {archive}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services",
            "control-center",
            "--queue",
            url,
            "--queue-prefix",
            prefix,
            "--port",
            str(port),
            "--operators",
            str(operators),
            "--config",
            str(config),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=2).close()
            return proc, base
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("citybrain control-center exited") from None
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("citybrain control-center did not start in 90 s")


async def probe_api(
    http: aiohttp.ClientSession, base: str, token: str, stop: asyncio.Event
) -> list[float]:
    """GET /api/entries at API_RPS until ``stop``; latencies in ms."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        started = time.perf_counter()
        async with http.get(f"{base}/api/entries?limit=50", headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"API answered {resp.status}")
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(max(0.0, 1 / API_RPS - (time.perf_counter() - started)))
    return latencies


async def dashboard(
    http: aiohttp.ClientSession,
    *,
    base: str,
    token: str,
    run: str,
    after: str,
    ready: asyncio.Event,
    delays: list[float],
    stop: asyncio.Event,
) -> None:
    """One open stream: the delay (ms) from append to arrival of each of this run's entries."""
    marker = f'"violation_id":"{run}:'.encode()
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(
        f"{base}/api/stream?after={after}",
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=None),
    ) as resp:
        ready.set()
        # Chunks, not lines: the client must not be what is measured.
        tail = b""
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(resp.content.readany(), timeout=1)
            except TimeoutError:
                continue
            if not chunk:
                return
            now_ms = time.time() * 1000
            data = tail + chunk
            at = data.find(marker)
            while at >= 0:
                end = data.find(b'"', at + len(marker))
                if end < 0:
                    break
                # The id is run:seq:appended-at-µs.
                sent_us = int(data[at + len(marker) : end].split(b":")[1])
                delays.append(now_ms - sent_us / 1000)
                at = data.find(marker, end)
            tail = data[at:] if at >= 0 else data[-len(marker) :]


async def writer(url: str, prefix: str, run: str, rate: float, seconds: float) -> int:
    """Append ``rate`` entries a second in batches every 50 ms, as a dispatcher does."""
    queue = open_queue(url, prefix=prefix, pool_size=2)
    tick_s, written = 0.05, 0
    per_tick = max(1, round(rate * tick_s))
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            now_us = int(time.time() * 1e6)
            batch = [
                PendingEntry(
                    fields(written + i, violation_id=f"{run}:{written + i}:{now_us}"), queue="city"
                )
                for i in range(per_tick)
            ]
            await queue.append_many(batch)
            written += len(batch)
            next_tick = started + (written / per_tick) * tick_s
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
    finally:
        await queue.close()
    return written


async def load(
    base: str, url: str, prefix: str, token: str, *, dashboards: int, rate: float, seconds: float
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=dashboards + 10)
    async with aiohttp.ClientSession(connector=connector) as http:
        stop = asyncio.Event()
        baseline_task = asyncio.create_task(probe_api(http, base, token, stop))
        await asyncio.sleep(BASELINE_S)
        stop.set()
        baseline = await baseline_task

        run = f"bench-{uuid.uuid4().hex[:6]}"
        # Every dashboard starts at the same point of the change log, before any append.
        async with http.get(
            f"{base}/api/entries?limit=1", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            after = (await resp.json())["last_change_id"]
        stop = asyncio.Event()
        delays: list[list[float]] = [[] for _ in range(dashboards)]
        ready = [asyncio.Event() for _ in range(dashboards)]
        streams = [
            asyncio.create_task(
                dashboard(
                    http,
                    base=base,
                    token=token,
                    run=run,
                    after=after,
                    ready=ready[i],
                    delays=delays[i],
                    stop=stop,
                )
            )
            for i in range(dashboards)
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), timeout=60)
        api_task = asyncio.create_task(probe_api(http, base, token, stop))
        written = await writer(url, prefix, run, rate, seconds)
        await asyncio.sleep(2)  # the last entries' delivery
        stop.set()
        under_load = await api_task
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
    all_delays = [d for per in delays for d in per]
    return {
        "dashboards": dashboards,
        "rate_per_s": rate,
        "seconds": seconds,
        "written": written,
        "delivered": len(all_delays),
        "expected_deliveries": written * dashboards,
        "api_ms_baseline": percentiles(baseline),
        "api_ms_under_load": percentiles(under_load),
        "delivery_ms": percentiles(all_delays),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboards", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200, help="entries appended per second")
    parser.add_argument("--seconds", type=float, default=20, help="how long the load runs")
    parser.add_argument("--memory-entries", type=int, default=20_000)
    parser.add_argument("--memory-rounds", type=int, default=3)
    args = parser.parse_args()
    url = redis_url()

    console.print(f"memory: {args.memory_entries} entries, {args.memory_rounds} retention rounds")
    memory = memory_phase(url, entries=args.memory_entries, rounds=args.memory_rounds)

    console.print(
        f"load: {args.dashboards} dashboards, {args.rate:.0f} entries/s, {args.seconds:.0f} s"
    )
    prefix = f"bench-cc-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        operators = Path(tmp) / "ops.yaml"
        token = add_operator(operators, "bench", Role.VIEWER)
        proc, base = start_service(url, prefix, operators, Path(tmp) / "archive.sqlite")
        try:
            result = asyncio.run(
                load(
                    base,
                    url,
                    prefix,
                    token,
                    dashboards=args.dashboards,
                    rate=args.rate,
                    seconds=args.seconds,
                )
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)
    client.close()

    base_p99 = result["api_ms_baseline"]["p99"]
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "memory": memory,
        "load": result,
        "api_p99_ratio_under_load": round(result["api_ms_under_load"]["p99"] / base_p99, 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))

    table = Table(title="control center")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("Redis bytes per open entry", f"{memory['bytes_per_open_entry']:,}")
    table.add_row("GiB for 1 M open entries", f"{memory['gib_per_million_open_entries']}")
    table.add_row("Redis growth over retention rounds", f"{memory['growth_over_rounds_bytes']:,} B")
    table.add_row("API p99, idle (ms)", f"{base_p99}")
    table.add_row(
        f"API p99, {args.dashboards} dashboards + {args.rate:.0f}/s (ms)",
        f"{result['api_ms_under_load']['p99']}",
    )
    table.add_row("API p99 ratio under load", f"{report['api_p99_ratio_under_load']}")
    table.add_row(
        "new-entry delivery p50 / p99 (ms)",
        f"{result['delivery_ms']['p50']} / {result['delivery_ms']['p99']}",
    )
    table.add_row(
        "delivered / expected", f"{result['delivered']:,} / {result['expected_deliveries']:,}"
    )
    console.print(table)


if __name__ == "__main__":
    main()
