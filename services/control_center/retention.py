"""Retention: entries closed (resolved or false positive) long enough ago leave Redis for
the archive, a batch at a time, so Redis holds open work and recent history only.

A batch is written to the archive and committed before it is evicted from Redis, and an
eviction only happens if the entry is still at the version archived: a crash in between
leaves an entry in both places (reads show it once), never in neither, and an entry
reopened meanwhile stays live.
"""

from __future__ import annotations

import asyncio
import logging
import time

from services.common.queue import ControlCenterQueue, EntryNotFoundError, QueueUnavailableError
from services.common.queue.archive import SQLiteArchive
from services.control_center.config import RetentionSettings
from services.control_center.metrics import ControlCenterMetrics

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


async def archive_closed(
    live: ControlCenterQueue, archive: SQLiteArchive, *, before_ms: int, batch: int
) -> int:
    """Move every entry closed before ``before_ms`` to the archive; returns how many."""
    moved = 0
    while True:
        ids = await live.closed_before(before_ms, limit=batch)
        if not ids:
            return moved
        snapshots = []
        for vid in ids:
            try:
                snapshots.append((await live.get(vid), await live.history(vid)))
            except EntryNotFoundError:
                continue
        await archive.put_many(snapshots)
        evicted = [await live.evict(e.violation_id, version=e.version) for e, _ in snapshots]
        moved += sum(evicted)
        if not any(evicted):
            # Every one of them changed meanwhile; the next pass sees them again.
            return moved


async def run_retention(
    live: ControlCenterQueue,
    archive: SQLiteArchive,
    *,
    settings: RetentionSettings,
    metrics: ControlCenterMetrics | None = None,
) -> None:
    """Archive closed entries every ``settings.interval_s`` until cancelled."""
    while True:
        before_ms = int(time.time() * 1000 - settings.days * DAY_MS)
        try:
            moved = await archive_closed(live, archive, before_ms=before_ms, batch=settings.batch)
        except QueueUnavailableError as exc:
            log.warning(
                "retention: Redis unavailable, next try in %.0f s: %s", settings.interval_s, exc
            )
        else:
            if moved:
                log.info("retention: archived %d closed entries", moved)
                if metrics is not None:
                    metrics.archived.inc(moved)
        await asyncio.sleep(settings.interval_s)
