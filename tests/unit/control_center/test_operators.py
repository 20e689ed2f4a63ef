import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.config.loader import ConfigError
from services.control_center.operators import (
    OperatorStore,
    add_operator,
    load_operators,
    remove_operator,
)
from services.control_center.workflow import Role


def test_tokens_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    path = tmp_path / "ops.yaml"
    token = add_operator(path, "li.wei", Role.OPERATOR)
    text = path.read_text()
    assert token not in text
    assert "$argon2id$" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = OperatorStore(path)
    who = store.verify(token)
    assert who is not None
    assert (who.name, who.role) == ("li.wei", Role.OPERATOR)
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify("garbage") is None


def test_removing_an_operator_revokes_the_token_at_once(tmp_path: Path) -> None:
    path = tmp_path / "ops.yaml"
    token = add_operator(path, "li.wei", Role.OPERATOR)
    store = OperatorStore(path)
    assert store.verify(token) is not None
    remove_operator(path, "li.wei")
    assert store.verify(token) is None
    with pytest.raises(ValueError, match="no operator"):
        remove_operator(path, "li.wei")


def test_names_are_unique_and_the_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "ops.yaml"
    add_operator(path, "li.wei", Role.VIEWER)
    with pytest.raises(ValueError, match="already exists"):
        add_operator(path, "li.wei", Role.OPERATOR)
    path.write_text("open_reads: maybe\noperators: []\n")
    with pytest.raises(ConfigError, match="open_reads"):
        load_operators(path)


def test_operators_cli_prints_the_token_last(tmp_path: Path) -> None:
    path = tmp_path / "ops.yaml"
    runner = CliRunner()
    added = runner.invoke(
        app, ["operators", "add", "zhang.min", "--role", "supervisor", "--file", str(path)]
    )
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    assert OperatorStore(path).verify(token) is not None
    listed = runner.invoke(app, ["operators", "list", "--file", str(path)])
    assert "zhang.min" in listed.output
    assert token not in listed.output
    bad = runner.invoke(
        app, ["operators", "add", "bad name", "--role", "viewer", "--file", str(path)]
    )
    assert bad.exit_code == 2
    removed = runner.invoke(app, ["operators", "remove", "zhang.min", "--file", str(path)])
    assert removed.exit_code == 0
