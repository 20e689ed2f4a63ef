"""``citybrain config ...``: validate config files before a service starts on them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.common.config.check import check_file
from services.common.config.loader import ConfigError
from services.common.console import err, out

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


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
