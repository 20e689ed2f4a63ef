"""``citybrain dispatch`` refuses faust, mode and aiokafka versions its internals were not
tested with, and the tested versions are the ones pyproject.toml pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.dispatcher.faust_internals import versions
from services.dispatcher.faust_internals.versions import (
    TESTED_VERSIONS,
    UntestedVersionError,
    check_tested_versions,
)

ROOT = Path(__file__).resolve().parents[3]


def test_the_tested_versions_are_the_pinned_ones() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([a-z-]+)(?:\[[a-z,]+\])?==(.+)", requirement)
        if match:
            pins[match[1]] = match[2]
    assert pins == dict(TESTED_VERSIONS)


def test_the_locked_environment_passes() -> None:
    check_tested_versions()


@pytest.mark.parametrize(
    ("installed", "named"),
    [
        ({"faust-streaming": "0.16.0"}, "untested faust-streaming 0.16.0 (tested: 0.15.3)"),
        ({"mode-streaming": "0.7.2"}, "untested mode-streaming 0.7.2 (tested: 0.7.1)"),
        ({"aiokafka": None}, "untested aiokafka (not installed) (tested: 0.14.0)"),
        (
            {"aiokafka": "0.12.0", "faust-streaming": "0.11.0"},
            "untested faust-streaming 0.11.0 (tested: 0.15.3), aiokafka 0.12.0 (tested: 0.14.0)",
        ),
    ],
)
def test_an_untested_version_is_named(
    monkeypatch: pytest.MonkeyPatch, installed: dict[str, str | None], named: str
) -> None:
    monkeypatch.setattr(
        versions, "installed_version", lambda name: installed.get(name, TESTED_VERSIONS[name])
    )
    with pytest.raises(UntestedVersionError) as excinfo:
        check_tested_versions()
    message = str(excinfo.value)
    assert message.startswith(named + ": ")
    assert "\n" not in message


def test_dispatch_refuses_to_start_on_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        versions,
        "installed_version",
        lambda name: "0.16.0" if name == "faust-streaming" else TESTED_VERSIONS[name],
    )
    # The broker address is never reached: the check comes first.
    result = CliRunner().invoke(
        app, ["dispatch", "--bus", "kafka://127.0.0.1:1", "--queue", "redis://127.0.0.1:1"]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error untested faust-streaming 0.16.0 (tested: 0.15.3)")
