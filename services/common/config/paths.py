"""Where citybrain finds its config files: the packaged defaults, or a directory of your own.

The defaults ship inside the package (:mod:`services.common.config.defaults`), so a wheel or an
image has them. ``CITYBRAIN_CONFIG_DIR`` (or ``citybrain --config-dir DIR``) replaces the
whole directory: every file is then read from there, laid out like the defaults
(``citybrain config defaults DIR`` writes a copy to start from). The variable is read when a
config loads, not at import, so a command line option can set it first.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from services.common.config.loader import ConfigError

CONFIG_DIR_ENV = "CITYBRAIN_CONFIG_DIR"

CATALOGUE_FILE = "cities.yaml"
DISPATCH_FILE = "dispatch.yaml"
SIMULATOR_FILE = "simulator.yaml"
SCENES_DIR = "scenes"


def packaged_config_dir() -> Path:
    """The defaults inside the installed package.

    >>> (packaged_config_dir() / CATALOGUE_FILE).is_file()
    True
    """
    root = resources.files("services.common.config.defaults")
    # A zipped install would hand back a Traversable that is not a path; pip and uv always
    # install files, and the loaders need real paths for the scenes beside the catalogue.
    if not isinstance(root, Path):
        raise ConfigError(str(root), ["<root>: citybrain must be installed as files, not zipped"])
    return root


def config_dir() -> Path:
    """``$CITYBRAIN_CONFIG_DIR`` when set, else the packaged defaults.

    >>> os.environ.pop(CONFIG_DIR_ENV, None) and None
    >>> config_dir() == packaged_config_dir()
    True
    """
    override = os.environ.get(CONFIG_DIR_ENV, "").strip()
    if not override:
        return packaged_config_dir()
    directory = Path(override).expanduser()
    if not directory.is_dir():
        raise ConfigError(override, [f"<root>: {CONFIG_DIR_ENV} is not a directory"])
    return directory


def config_path(name: str) -> Path:
    """The file ``name`` (for example ``"dispatch.yaml"``) in the config directory in force."""
    return config_dir() / name


def copy_defaults(target: Path) -> list[Path]:
    """Write the packaged defaults under ``target`` (created if needed) and list what was
    written; existing files are never overwritten, so a half-edited copy is safe."""
    source = packaged_config_dir()
    written: list[Path] = []
    for path in sorted(source.rglob("*.yaml")):
        destination = target / path.relative_to(source)
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        written.append(destination)
    return written
