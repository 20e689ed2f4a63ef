"""Load YAML into validated config models, with errors that point at the key.

Every config file goes through :func:`load_model`, so a bad file always reads the same way::

    scenes/wuzhen-cam-01.yaml: stop_line.points: must be 2 distinct points
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used; ``str()`` is one line per problem, key path first."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def format_validation_error(exc: ValidationError) -> list[str]:
    """Turn pydantic's errors into ``key.path[2]: reason`` lines."""
    problems = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{path or '<root>'}: {msg}")
    return problems


# A config file is a page or two of YAML; anything near this size is a mistake (a video
# passed for a scene), and parsing it would take minutes and gigabytes first.
MAX_CONFIG_BYTES = 1024 * 1024


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in a mapping is an error: by
    default the last one silently wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Read a YAML file, turning I/O, size, encoding and syntax errors (a key given twice
    included) into :class:`ConfigError`."""
    try:
        with path.open("rb") as handle:
            # Never more than the limit, whatever the file is (/dev/zero, a pipe, a video).
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), [f"larger than {MAX_CONFIG_BYTES:,} bytes: not a config file"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), [f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"]
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [f"{where}invalid YAML: {problem}"]) from None


def validate_data(model: type[ModelT], data: Any, *, source: str) -> ModelT:
    """Validate already-parsed data against ``model``."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["<root>: expected a mapping of keys to values"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_validation_error(exc)) from None


def load_model(model: type[ModelT], path: Path | str) -> ModelT:
    """Load and validate one YAML file as ``model``."""
    path = Path(path)
    return validate_data(model, read_yaml(path), source=str(path))
