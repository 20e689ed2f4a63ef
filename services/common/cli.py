"""``citybrain config ...``: validate config files before a service starts on them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from services.common.config.check import check_file
from services.common.config.loader import ConfigError
from services.common.config.paths import config_dir, copy_defaults
from services.common.console import err, fail, out

config_app = typer.Typer(help="Validate citybrain config files.", no_args_is_help=True)


@config_app.command("check")
def check(
    files: Annotated[
        list[Path],
        typer.Argument(help="Scene files, the city catalogue (cities.yaml) or dispatch settings."),
    ],
) -> None:
    """Validate each FILE; a bad one prints `FILE: key.path: reason` and exits with code 2."""
    failed = False
    for path in files:
        try:
            model = check_file(path)
        except ConfigError as exc:
            failed = True
            for line in str(exc).splitlines():
                err.print(f"[red]error[/red] {line}")
            continue
        out.print(f"[green]ok[/green] {path} ({type(model).__name__})")
    if failed:
        raise typer.Exit(code=2)


@config_app.command("defaults")
def defaults(
    target: Annotated[Path, typer.Argument(help="Directory to write the defaults into.")],
) -> None:
    """Copy the packaged default configs into TARGET to edit them; files already there are kept.

    Then run any command with `--config-dir TARGET` (or CITYBRAIN_CONFIG_DIR=TARGET).
    """
    try:
        written = copy_defaults(target)
    except OSError as exc:
        raise fail(f"{target}: {exc.strerror or exc}") from None
    for path in written:
        out.print(f"wrote {escape(str(path))}")
    out.print(
        f"{len(written)} files written to {escape(str(target))} (defaults from {config_dir()})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
