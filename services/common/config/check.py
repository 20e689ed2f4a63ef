"""``citybrain config check``: recognise a config file by its top-level key and validate it.

Each service registers the kinds of config file it owns (:func:`register_kind`) when the
console script assembles its commands; this module knows only the ones ``services.common``
itself defines, the scene and the city catalogue.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from services.common.config.catalogue import Catalogue
from services.common.config.loader import ConfigError, read_yaml, validate_data
from services.common.config.scene import SceneConfig

# The key that only that kind of file has at its top level.
_KINDS: dict[str, type[BaseModel]] = {
    "camera_id": SceneConfig,
    "cities": Catalogue,
}


def register_kind(top_level_key: str, model: type[BaseModel]) -> None:
    """Recognise files with ``top_level_key`` at their root as ``model``.

    >>> from services.common.config.base import StrictModel
    >>> class Example(StrictModel):
    ...     example: int
    >>> register_kind("example", Example)
    >>> "example" in known_keys()
    True
    """
    registered = _KINDS.setdefault(top_level_key, model)
    if registered is not model:
        raise ValueError(f"config key {top_level_key!r} is already {registered.__name__}'s")


def known_keys() -> list[str]:
    """The top-level keys of every registered kind, sorted."""
    return sorted(_KINDS)


def check_file(path: Path) -> BaseModel:
    """Validate one config file of any registered kind, raising :class:`ConfigError`."""
    data = read_yaml(path)
    if isinstance(data, dict):
        for key, model in _KINDS.items():
            if key in data:
                return validate_data(model, data, source=str(path))
    raise ConfigError(
        str(path), [f"<root>: not a known config file; expected one of the keys {known_keys()}"]
    )
