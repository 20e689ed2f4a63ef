"""The ``citybrain`` console script: one sub-command per service, each with its own --help.

Every stage registers its commands from its own package, so this file only assembles them.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from services.common.config.paths import CONFIG_DIR_ENV

app = typer.Typer(
    name="citybrain",
    help=(
        "City-brain event pipeline: simulated Wuzhen and Hangzhou cameras, OpenCV violation "
        "detectors, Kafka, a faust dispatcher and a Redis control-center queue."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module has ``register(app)``; importing lazily keeps `citybrain --help` fast.
_COMMAND_MODULES = (
    "services.common.cli",
    "services.dispatcher.cli",
    "services.detector.cli",
    "services.control_center.cli",
    "simulators.cli",
    "services.embedded",
)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
    config_dir: Annotated[
        Path | None,
        typer.Option(
            "--config-dir",
            envvar=CONFIG_DIR_ENV,
            help="Read every config (cities.yaml, scenes/, dispatch.yaml, simulator.yaml) from "
            "this directory instead of the packaged defaults; `citybrain config defaults DIR` "
            "writes a copy to edit.",
        ),
    ] = None,
) -> None:
    if config_dir is not None:
        # The loaders read the variable when a config loads; child processes inherit it.
        os.environ[CONFIG_DIR_ENV] = str(config_dir.resolve())
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _module in _COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    app()
