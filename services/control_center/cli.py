"""``citybrain feed`` and the operator commands: ``status`` (change it) and ``history``.

The feed prints entries oldest first; ``--json`` prints each as one JSON object per line,
holding the violation fields plus ``status``, ``district`` and ``dispatched_ts_ms`` (see
``shared/contracts.md``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from services.common.console import fail, out
from services.common.queue import (
    ControlCenterQueue,
    EntryNotFoundError,
    EntryStatus,
    QueueEntry,
    QueueUnavailableError,
    open_queue,
)

DEFAULT_QUEUE_URL = "redis://127.0.0.1:6379/0"
READ_PAGE = 500
FOLLOW_BLOCK_MS = 1_000

T = TypeVar("T")


QueueOption = Annotated[
    str, typer.Option("--queue", help="redis://HOST:PORT (optionally /DB) or memory://")
]
PrefixOption = Annotated[str, typer.Option("--queue-prefix", help="Redis key prefix")]


def _run(url: str, prefix: str, action: Callable[[ControlCenterQueue], Awaitable[T]]) -> T:
    """Run ``action`` on an open queue, turning queue errors into a message and exit 2."""

    async def main() -> T:
        queue = open_queue(url, prefix=prefix)
        try:
            return await action(queue)
        finally:
            await queue.close()

    try:
        return asyncio.run(main())
    except QueueUnavailableError as exc:
        raise fail(str(exc)) from None
    except EntryNotFoundError as exc:
        raise fail(f"no entry with violation id {exc.args[0]!r}") from None


def _line(entry: QueueEntry) -> str:
    """One human-readable feed line."""
    f = entry.fields
    when = datetime.fromtimestamp(int(f.get("ts_ms", 0)) / 1000).isoformat(timespec="seconds")
    repeats = f" (+{entry.repeat_count} repeats)" if entry.repeat_count else ""
    place = f.get("location") or f.get("camera_id")
    return escape(
        f"{when}  {f.get('priority', '-'):<7} {entry.status.value:<14} {entry.queue:<20} "
        f"{f.get('type')} at {place}  {entry.violation_id}{repeats}"
    )


def _print(entry: QueueEntry, *, as_json: bool) -> None:
    if as_json:
        # Plain print: rich would wrap or restyle a long JSON line.
        print(json.dumps(entry.to_feed_dict(), ensure_ascii=False), flush=True)
    else:
        out.print(_line(entry))


async def _feed(
    queue: ControlCenterQueue, *, as_json: bool, follow: bool, limit: int | None
) -> None:
    after, printed = "0-0", 0

    def room() -> int:
        return READ_PAGE if limit is None else min(READ_PAGE, limit - printed)

    while room() > 0:
        page = await queue.read(after=after, count=room())
        if not page:
            if not follow:
                return
            page = await queue.follow(after=after, block_ms=FOLLOW_BLOCK_MS)
        for entry in page[: room()]:
            _print(entry, as_json=as_json)
            printed += 1
            after = entry.entry_id


def feed(
    *,
    queue: QueueOption = DEFAULT_QUEUE_URL,
    queue_prefix: PrefixOption = "citybrain",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="wait for new entries")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="stop after N entries")
    ] = None,
) -> None:
    """Print control-center entries, oldest first; --follow keeps printing new ones."""
    try:
        _run(queue, queue_prefix, lambda q: _feed(q, as_json=as_json, follow=follow, limit=limit))
    except KeyboardInterrupt:
        return


def status(
    violation_id: Annotated[str, typer.Argument(help="the entry's violation id")],
    new_status: Annotated[EntryStatus, typer.Argument(metavar="STATUS", help="the new status")],
    *,
    by: Annotated[str, typer.Option("--by", help="who makes the change (kept in history)")],
    note: Annotated[str, typer.Option("--note", help="why, for the audit history")] = "",
    queue: QueueOption = DEFAULT_QUEUE_URL,
    queue_prefix: PrefixOption = "citybrain",
) -> None:
    """Set an entry's status (acknowledged, resolved, false_positive, new); every change is kept."""
    entry = _run(
        queue,
        queue_prefix,
        lambda q: q.set_status(
            violation_id, new_status, by=by, ts_ms=int(time.time() * 1000), note=note
        ),
    )
    out.print(_line(entry))


def history(
    violation_id: Annotated[str, typer.Argument(help="the entry's violation id")],
    *,
    queue: QueueOption = DEFAULT_QUEUE_URL,
    queue_prefix: PrefixOption = "citybrain",
) -> None:
    """Print every status change of an entry, oldest first, as JSON lines."""
    for change in _run(queue, queue_prefix, lambda q: q.history(violation_id)):
        print(change.model_dump_json())


def register(app: typer.Typer) -> None:
    app.command("feed")(feed)
    app.command("status")(status)
    app.command("history")(history)
