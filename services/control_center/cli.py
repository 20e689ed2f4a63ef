"""The control center's commands.

- ``feed`` prints entries oldest first (``--json``: one object per line, holding the
  violation fields plus ``status``, ``district`` and ``dispatched_ts_ms``; see
  ``shared/contracts.md``); ``history`` prints an entry's audit trail. Both read Redis
  directly, and the archive where retention moved closed entries.
- ``control-center`` serves the dashboard, API, /metrics and /healthz from Redis alone.
- ``operators add|list|remove`` manage who may sign in.
- ``ack``, ``resolve``, ``reject`` and ``reopen`` change an entry's status through the API,
  as the operator whose token is in ``CITYBRAIN_TOKEN``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvloop
from prometheus_client import CollectorRegistry
from rich.markup import escape
from rich.table import Table

from services.common.config.loader import ConfigError
from services.common.console import fail, out
from services.common.queue import (
    ControlCenterQueue,
    EntryNotFoundError,
    EntryStatus,
    QueueEntry,
    QueueUnavailableError,
    open_queue,
)
from services.common.queue.archive import ArchivedQueue, SQLiteArchive
from services.control_center.api import create_app
from services.control_center.config import ControlCenterConfig, load_control_center_config
from services.control_center.operators import (
    DEFAULT_OPERATORS_PATH,
    OperatorStore,
    add_operator,
    load_operators,
    remove_operator,
)
from services.control_center.server import AppServer
from services.control_center.workflow import Role

log = logging.getLogger(__name__)

DEFAULT_QUEUE_URL = "redis://127.0.0.1:6379/0"
DEFAULT_API_URL = "http://127.0.0.1:8080"
READ_PAGE = 500
FOLLOW_BLOCK_MS = 1_000
API_TIMEOUT_S = 10

T = TypeVar("T")


QueueOption = Annotated[
    str, typer.Option("--queue", help="redis://HOST:PORT (optionally /DB) or memory://")
]
PrefixOption = Annotated[str, typer.Option("--queue-prefix", help="Redis key prefix")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Control-center settings (retention, auth, stream); default: control_center.yaml "
        "in the config directory.",
    ),
]
OperatorsOption = Annotated[
    Path, typer.Option("--operators", "--file", help="The operators file (YAML).")
]


def _config(path: Path | None) -> ControlCenterConfig:
    try:
        return load_control_center_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _run(
    url: str,
    prefix: str,
    archive: Path | None,
    action: Callable[[ControlCenterQueue], Awaitable[T]],
) -> T:
    """Run ``action`` on an open queue (with its archive, if there is one), turning queue
    errors into a message and exit 2."""

    async def main() -> T:
        live = open_queue(url, prefix=prefix, pool_size=4)
        queue = ArchivedQueue(live, SQLiteArchive(archive)) if archive else live
        try:
            return await action(queue)
        finally:
            await queue.close()

    try:
        return asyncio.run(main())
    except (QueueUnavailableError, ValueError) as exc:
        raise fail(str(exc)) from None
    except EntryNotFoundError as exc:
        raise fail(f"no entry with violation id {exc.args[0]!r}") from None


def _archive_path(config_path: Path | None) -> Path | None:
    path = _config(config_path).retention.archive
    return path if path.exists() else None


def _line(entry: QueueEntry) -> str:
    """One human-readable feed line."""
    f = entry.fields
    when = datetime.fromtimestamp(f.ts_ms / 1000).isoformat(timespec="seconds")
    repeats = f" (+{entry.repeat_count} repeats)" if entry.repeat_count else ""
    place = f.location or f.camera_id
    return escape(
        f"{when}  {f.priority:<7} {entry.status.value:<14} {entry.queue:<20} "
        f"{f.type.value} at {place}  {entry.violation_id}{repeats}"
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
    config: ConfigOption = None,
) -> None:
    """Print control-center entries, oldest first (archived ones included); --follow keeps
    printing new ones."""
    archive = _archive_path(config)
    try:
        _run(
            queue,
            queue_prefix,
            archive,
            lambda q: _feed(q, as_json=as_json, follow=follow, limit=limit),
        )
    except KeyboardInterrupt:
        return


def history(
    violation_id: Annotated[str, typer.Argument(help="the entry's violation id")],
    *,
    queue: QueueOption = DEFAULT_QUEUE_URL,
    queue_prefix: PrefixOption = "citybrain",
    config: ConfigOption = None,
) -> None:
    """Print every status change of an entry, oldest first, as JSON lines."""
    changes = _run(queue, queue_prefix, _archive_path(config), lambda q: q.history(violation_id))
    for change in changes:
        print(change.model_dump_json())


def control_center(
    *,
    queue: QueueOption = DEFAULT_QUEUE_URL,
    queue_prefix: PrefixOption = "citybrain",
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to serve on.")] = 8080,
    operators: OperatorsOption = DEFAULT_OPERATORS_PATH,
    config: ConfigOption = None,
    evidence_dir: Annotated[
        Path, typer.Option(help="Where the detectors write evidence snapshots.")
    ] = Path("evidence"),
) -> None:
    """Serve the operator dashboard, the HTTP API (/api/openapi.json), /metrics and /healthz
    from the control-center queue in Redis, with no Kafka. Stop with Ctrl-C or SIGTERM."""
    settings = _config(config)
    try:
        store = OperatorStore(operators)
        live = open_queue(queue, prefix=queue_prefix, pool_size=settings.redis_pools.api)
        archive = SQLiteArchive(settings.retention.archive)
    except (ConfigError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    if not store.operators():
        log.warning("no operators in %s: add one with `citybrain operators add`", operators)
    app = create_app(
        queue=live,
        operators=store,
        registry=CollectorRegistry(),
        evidence_dir=evidence_dir,
        config=settings,
        archive=archive,
    )

    async def main() -> None:
        server = AppServer(app, host=host, port=port)
        await server.start()
        out.print(f"control center on http://{host}:{server.port}/ (queue {queue})")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiting = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(server.wait())
        await asyncio.wait({waiting, failed}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        await server.stop()
        await live.close()
        archive.close()
        out.print("control center stopped")

    try:
        # uvloop: the live streams are many small socket writes, which it does cheaper.
        uvloop.run(main())
    except OSError as exc:
        raise fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


operators_app = typer.Typer(
    help="Operator accounts: who may sign in to the control center, with which role.",
    no_args_is_help=True,
)


@operators_app.command("add")
def operators_add(
    name: Annotated[str, typer.Argument(help="The operator's name, as kept in history.")],
    *,
    role: Annotated[
        Role, typer.Option(help="viewer reads; operator works entries; supervisor may also reopen.")
    ],
    file: OperatorsOption = DEFAULT_OPERATORS_PATH,
) -> None:
    """Add an operator and print the new token as the last line (only its hash is stored)."""
    try:
        token = add_operator(file, name, role)
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    out.print(f"added {escape(name)} ({role.value}) to {file}; the token is shown only now:")
    print(token, flush=True)


@operators_app.command("list")
def operators_list(*, file: OperatorsOption = DEFAULT_OPERATORS_PATH) -> None:
    """List the operators (names, roles, when added); tokens are never shown."""
    try:
        content = load_operators(file)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    table = Table("name", "role", "key id", "added")
    for o in content.operators:
        added = datetime.fromtimestamp(o.created_ts_ms / 1000).isoformat(timespec="seconds")
        table.add_row(escape(o.name), o.role.value, o.key_id, added)
    out.print(table)
    reads = "open (no token needed)" if content.open_reads else "need a token"
    out.print(f"{len(content.operators)} operators in {file}; reads {reads}")


@operators_app.command("remove")
def operators_remove(
    name: Annotated[str, typer.Argument(help="The operator to remove; the token stops working.")],
    *,
    file: OperatorsOption = DEFAULT_OPERATORS_PATH,
) -> None:
    """Remove an operator; a running control center refuses the token at once."""
    try:
        remove_operator(file, name)
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    out.print(f"removed {escape(name)} from {file}")


def change_via_api(
    url: str, violation_id: str, status: EntryStatus, *, note: str, token: str
) -> dict[str, object]:
    """POST a status change to the API; raises ``typer.Exit(2)`` with the server's message."""
    quoted = urllib.parse.quote(violation_id, safe="")
    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/entries/{quoted}/status",
        data=json.dumps({"status": status.value, "note": note}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
            body: dict[str, object] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise fail(f"{exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise fail(f"cannot reach the control center at {url}: {exc.reason}") from None


def _status_command(status: EntryStatus, summary: str) -> Callable[..., None]:
    def command(
        violation_id: Annotated[str, typer.Argument(help="the entry's violation id")],
        *,
        note: Annotated[str, typer.Option("--note", help="why, kept in the history")] = "",
        url: Annotated[
            str, typer.Option("--url", envvar="CITYBRAIN_URL", help="the control center")
        ] = DEFAULT_API_URL,
    ) -> None:
        token = os.environ.get("CITYBRAIN_TOKEN", "").strip()
        if not token:
            raise fail("set CITYBRAIN_TOKEN to your operator token (citybrain operators add)")
        entry = change_via_api(url, violation_id, status, note=note, token=token)
        by, version = escape(str(entry.get("status_by"))), entry.get("version")
        out.print(f"{escape(violation_id)}: {entry.get('status')} by {by} (version {version})")

    command.__doc__ = summary
    return command


def register(app: typer.Typer) -> None:
    app.command("feed")(feed)
    app.command("history")(history)
    app.command("control-center")(control_center)
    app.add_typer(operators_app, name="operators")
    app.command("ack")(
        _status_command(EntryStatus.ACKNOWLEDGED, "Acknowledge an entry (new → acknowledged).")
    )
    app.command("resolve")(
        _status_command(EntryStatus.RESOLVED, "Resolve an entry (acknowledged → resolved).")
    )
    app.command("reject")(
        _status_command(
            EntryStatus.FALSE_POSITIVE, "Reject an entry as a false positive (new or acknowledged)."
        )
    )
    app.command("reopen")(
        _status_command(EntryStatus.NEW, "Reopen an entry (→ new); supervisors only.")
    )
