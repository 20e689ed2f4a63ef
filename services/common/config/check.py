"""``citybrain config check``: recognise a config file by its top-level key and validate it."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from services.common.config.catalogue import Catalogue
from services.common.config.loader import ConfigError, read_yaml, validate_data
from services.common.config.scene import SceneConfig
from services.dispatcher.config import DispatchFile

# The key that only that kind of file has at its top level.
KINDS: dict[str, type[BaseModel]] = {
    "camera_id": SceneConfig,
    "cities": Catalogue,
    "dispatch": DispatchFile,
}


def check_file(path: Path) -> BaseModel:
    """Validate one config file of any known kind, raising :class:`ConfigError`."""
    data = read_yaml(path)
    if isinstance(data, dict):
        for key, model in KINDS.items():
            if key in data:
                return validate_data(model, data, source=str(path))
    raise ConfigError(
        str(path), [f"<root>: not a known config file; expected one of the keys {sorted(KINDS)}"]
    )
