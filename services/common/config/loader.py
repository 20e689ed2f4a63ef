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


def read_yaml(path: Path) -> Any:
    """Read a YAML file, turning I/O and syntax errors into :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    try:
        return yaml.safe_load(text)
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
