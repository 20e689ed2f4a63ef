"""docker-compose.yml as Compose reads it: YAML with ``${VAR}`` interpolation applied."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_PATH = ROOT / "docker-compose.yml"
# CI checks out ../shared beside the repository; COMPOSE_SCHEMA names another copy.
COMPOSE_SCHEMA_PATH = Path(
    os.environ.get("COMPOSE_SCHEMA") or ROOT.parent / "shared" / "schemas" / "compose-spec.json"
)
# What the README tells users to export; any value works for the checks.
TEST_ENV = {"REDIS_PASSWORD": "0123456789abcdef", "GRAFANA_ADMIN_PASSWORD": "fedcba9876"}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(KeyError):
    """A ``${VAR:?message}`` whose variable is unset, as Compose refuses it."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:?err}``
    and ``$$`` for a literal ``$``.

    >>> interpolate("a ${X:-1} ${Y} $$Z", {"Y": "2"})
    'a 1 2 $Z'
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("named")
        value = env.get(name)
        op, arg = match.group("op"), match.group("arg") or ""
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op is not None and op.endswith("-") and unset:
            return arg
        if op is not None and op.endswith("?") and unset:
            raise MissingVariableError(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(replace, text)


def _walk(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


def load_compose(env: Mapping[str, str] = TEST_ENV, path: Path = COMPOSE_PATH) -> dict[str, Any]:
    """The compose file after YAML merge keys and interpolation, as Compose validates it."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    result: dict[str, Any] = _walk(document, env)
    return result
