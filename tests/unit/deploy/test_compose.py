"""docker-compose.yml and the Dockerfile, checked without a Docker engine."""

from __future__ import annotations

import json
import shlex
from typing import Any

import jsonschema
import pytest
import typer.main

from services.cli import app
from tests.unit.deploy.compose import (
    COMPOSE_PATH,
    COMPOSE_SCHEMA_PATH,
    ROOT,
    MissingVariableError,
    load_compose,
)

CONTRACT_SERVICES = {
    "kafka",
    "redis",
    "simulator",
    "detector",
    "dispatcher",
    "control-center",
    "prometheus",
    "grafana",
}
SCALABLE = ("simulator", "detector")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def citybrain_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if str(s.get("image", "")).startswith("citybrain:")}


def test_compose_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert COMPOSE_SCHEMA_PATH.is_file(), f"{COMPOSE_SCHEMA_PATH}: check out ../shared beside"
    schema = json.loads(COMPOSE_SCHEMA_PATH.read_text(encoding="utf-8"))
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_passwords_come_from_the_environment_not_the_file() -> None:
    with pytest.raises(MissingVariableError, match="REDIS_PASSWORD"):
        load_compose(env={"GRAFANA_ADMIN_PASSWORD": "x"})
    with pytest.raises(MissingVariableError, match="GRAFANA_ADMIN_PASSWORD"):
        load_compose(env={"REDIS_PASSWORD": "x"})


def test_the_contract_services_are_all_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= CONTRACT_SERVICES


@pytest.fixture(scope="module")
def citybrain_cli() -> Any:
    return typer.main.get_command(app)


class UnknownCommandError(LookupError):
    pass


def _parse(cli: Any, argv: list[str]) -> dict[str, Any]:
    """Parse ``citybrain ARGV`` as the console script would (option names, types, ranges and
    required options), without running the command."""
    root = cli.context_class(cli, info_name="citybrain")
    command = cli.get_command(root, argv[0])
    if command is None:
        raise UnknownCommandError(f"No such command {argv[0]!r}")
    params: dict[str, Any] = command.make_context(argv[0], argv[1:], parent=root).params
    return params


def test_every_citybrain_command_is_a_real_subcommand_with_valid_options(
    services: dict[str, dict[str, Any]], citybrain_cli: Any
) -> None:
    commands = {n: s["command"] for n, s in citybrain_services(services).items()}
    assert set(commands) >= {"simulator", "detector", "dispatcher", "control-center"}
    for name, argv in commands.items():
        assert isinstance(argv, list), f"{name}: give command as a list, not a shell string"
        try:
            _parse(citybrain_cli, argv)
        except Exception as exc:  # click's usage errors, raised before any command runs
            pytest.fail(f"{name}: citybrain {shlex.join(argv)}: {exc}")


def test_a_bad_option_is_caught_by_the_same_parse(citybrain_cli: Any) -> None:
    with pytest.raises(Exception, match="valid integer"):
        _parse(citybrain_cli, ["detect", "--source", "kafka://k:1", "--metrics-port", "x"])
    with pytest.raises(Exception, match="No such command"):
        _parse(citybrain_cli, ["detector"])


def test_services_are_healthy_restarted_limited_and_wait_for_healthy_dependencies(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        assert service.get("restart") in {"unless-stopped", "always"}, name
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) <= 1.0, f"{name}: one service may not take a 2-core laptop"
        assert limits["memory"].endswith("M"), name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition["condition"] == "service_healthy", (name, dependency)
            assert "healthcheck" in services[dependency], f"{dependency} has no health check"
    missing = sorted(n for n, s in services.items() if "healthcheck" not in s)
    assert missing == ["redis-exporter"], "only the exporter (a scratch image) has no shell"


def test_the_limits_fit_a_laptop_at_the_default_scale(services: dict[str, dict[str, Any]]) -> None:
    total_mb = sum(
        int(s["deploy"]["resources"]["limits"]["memory"].removesuffix("M"))
        * s["deploy"].get("replicas", 1)
        for s in services.values()
    )
    assert total_mb <= 6 * 1024


def test_scalable_services_publish_no_host_port_and_have_no_fixed_name(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in SCALABLE:
        assert "ports" not in services[name] and "container_name" not in services[name], name


def test_only_the_loopback_address_is_published_on_the_host(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_the_detectors_evidence_reaches_the_control_center_on_a_shared_volume(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    assert "evidence:/app/evidence" in services["detector"]["volumes"]
    assert "evidence:/app/evidence:ro" in services["control-center"]["volumes"]
    assert "evidence" in compose["volumes"]


def test_kafka_has_a_listener_for_the_network_and_one_for_the_host(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.1.")
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "INTERNAL://kafka:19092" in advertised and "EXTERNAL://127.0.0.1:" in advertised
    for name, service in citybrain_services(services).items():
        for arg in service["command"]:
            assert not arg.startswith("kafka://") or arg == "kafka://kafka:19092", name


def test_the_dockerfile_builds_from_the_lock_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = text.split("\nFROM ")
    assert len(stages) == 3, "a build stage and a final stage"
    build, final = stages[1], stages[2]
    assert "uv sync --locked --no-dev" in build and "--require-hashes" in build
    assert "uv " not in final and "pip install" not in final and "apt-get" not in final
    assert "USER citybrain" in final and 'ENTRYPOINT ["citybrain"]' in final
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[ignored.index("*") + 1 :], ".dockerignore admits only what the image copies"


def test_the_compose_file_is_the_one_the_readme_names() -> None:
    assert COMPOSE_PATH.name == "docker-compose.yml" and COMPOSE_PATH.is_file()
