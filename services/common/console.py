"""What every ``citybrain`` command prints with: one look for results and for errors.

A command fails with ``raise fail("...")``: each line goes to stderr as ``error <line>`` and
the exit code is 2, the code the contracts give for bad input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_RESOLUTION_RE = re.compile(r"^(\d{2,5})x(\d{2,5})$")

CatalogueOption = Annotated[
    Path | None,
    typer.Option(
        help="City/camera catalogue (YAML); default: cities.yaml in the config directory."
    ),
]


def fail(message: str) -> typer.Exit:
    """Print ``message`` as error lines; the caller raises the returned exit (code 2)."""
    for line in message.splitlines():
        err.print(f"[red]error[/red] {escape(line)}")
    return typer.Exit(code=2)


def parse_resolution(text: str) -> tuple[int, int]:
    """``"1280x720"`` → ``(1280, 720)``; anything else fails the command.

    >>> parse_resolution("640x360")
    (640, 360)
    """
    match = _RESOLUTION_RE.match(text)
    if match is None or not (16 <= int(match[1]) <= 7680 and 16 <= int(match[2]) <= 4320):
        raise fail(f"--resolution {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
    return int(match[1]), int(match[2])
