"""``citybrain stack up|down|status``: the whole topology as local processes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from services.common.config.loader import ConfigError
from services.common.console import err, fail, out
from services.stack import runner
from services.stack.config import DEFAULT_STACK_PATH, StackConfig, load_stack_config
from services.stack.plan import StackPaths, Urls

stack_app = typer.Typer(
    name="stack",
    help=(
        "Run the whole city brain as local processes on 127.0.0.1: Kafka, Redis, Prometheus, "
        "simulators, detectors (one consumer group on `frames`), dispatchers and the control "
        "center. PID files, logs and the rendered configuration live under "
        ".local/stack-<name>/. Ports, replica counts and cameras come from the stack file."
    ),
    no_args_is_help=True,
)

FileOption = Annotated[Path, typer.Option("--file", "-f", help="The stack file (YAML).")]


@stack_app.callback()
def _quiet_clients() -> None:
    # kafka-python logs every connection at INFO; the stack's own lines say what matters.
    logging.getLogger("kafka").setLevel(logging.WARNING)


def _load(path: Path) -> StackConfig:
    try:
        return load_stack_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _say(message: str) -> None:
    err.print(f"[dim]stack[/dim] {message}")


@stack_app.command("up")
def up_command(
    file: FileOption = DEFAULT_STACK_PATH,
    timeout_s: Annotated[
        float, typer.Option(min=10, help="How long to wait for every process to be healthy.")
    ] = 180,
) -> None:
    """Start everything not yet running; return once every process is healthy."""
    config = _load(file)
    try:
        state = runner.up(config, stack_file=file, say=_say, timeout_s=timeout_s)
    except runner.StackError as exc:
        err.print(f"[red]error[/red] {exc}")
        err.print("[dim]`citybrain stack down` stops what did start[/dim]")
        raise typer.Exit(code=1) from None
    urls = Urls.of(config)
    out.print(
        f"[green]ok[/green] stack {config.name!r} up: {len(state.services)} processes healthy; "
        f"bus {urls.bus}, queue {urls.queue}, prometheus {urls.prometheus}; "
        f"logs in {StackPaths.of(config).root / 'logs'}"
    )


@stack_app.command("down")
def down_command(file: FileOption = DEFAULT_STACK_PATH) -> None:
    """Stop every process (SIGTERM, then SIGKILL after 20 s) and the infra `up` started."""
    config = _load(file)
    runner.down(config, say=_say)
    out.print(f"[green]ok[/green] stack {config.name!r} down")


@stack_app.command("status")
def status_command(file: FileOption = DEFAULT_STACK_PATH) -> None:
    """Each process: PID, health, CPU, RSS, assigned partitions and consumer lag."""
    config = _load(file)
    rows = runner.status(config)
    table = Table(
        "process",
        "pid",
        "health",
        "cpu %",
        "rss MiB",
        "partitions",
        "lag (msgs)",
        title=f"stack {config.name}",
    )
    for row in rows:
        table.add_row(
            row.name,
            str(row.pid) if row.pid else "-",
            "[green]ok[/green]" if row.healthy else "[red]down[/red]",
            f"{row.cpu_percent:.0f}" if row.cpu_percent is not None else "-",
            f"{row.rss_bytes / 2**20:.0f}" if row.rss_bytes is not None else "-",
            str(row.partitions) if row.partitions is not None else "-",
            f"{row.lag_messages:.0f}" if row.lag_messages is not None else "-",
        )
    out.print(table)
    unhealthy = [r.name for r in rows if not r.healthy]
    out.print(
        f"{len(rows) - len(unhealthy)}/{len(rows)} healthy"
        + (f"; down: {', '.join(unhealthy)}" if unhealthy else "")
    )
    if unhealthy:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app)
