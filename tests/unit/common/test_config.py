from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from services.cli import app
from services.common.config.catalogue import catalogue_path, load_catalogue
from services.common.config.loader import ConfigError, load_model
from services.common.config.scene import SceneConfig

SCENE = {
    "camera_id": "wuzhen-cam-01",
    "city": "wuzhen",
    "fps": 10,
    "resolution_wh": [1280, 720],
    "traffic_light": {"roi": [1090, 30, 60, 150]},
    "stop_line": {"points": [[480, 300], [800, 300]], "travel_direction": [0, -1]},
    "no_parking_zones": [
        {
            "name": "hotel-entrance",
            "polygon": [[815, 420], [905, 420], [905, 640], [815, 640]],
            "max_dwell_s": 15,
        }
    ],
}


def write(tmp_path: Path, data: object, name: str = "scene.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def with_change(path: str, value: object) -> dict[str, object]:
    """A copy of SCENE with the dotted key ``path`` set to ``value``."""
    data = yaml.safe_load(yaml.safe_dump(SCENE))
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[leaf] = value
    return data  # type: ignore[no-any-return]


def test_contract_scene_loads(tmp_path: Path) -> None:
    scene = load_model(SceneConfig, write(tmp_path, SCENE))
    assert scene.traffic_light is not None
    assert scene.no_parking_zones[0].max_dwell_s == 15


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("stop_line.points", [[480, 300], [480, 300]], "stop_line.points: must be 2 distinct"),
        ("stop_line.travel_direction", [0, 0], "stop_line.travel_direction: must not be the zero"),
        ("no_parking_zones.0.polygon", [[1, 1], [2, 2]], "no_parking_zones[0].polygon:"),
        ("no_parking_zones.0.max_dwell_s", 0, "no_parking_zones[0].max_dwell_s:"),
        ("traffic_light.roi", [1250, 30, 60, 150], "traffic_light.roi: [1250, 30, 60, 150] lies"),
        ("camera_id", "Wuzhen Cam", "camera_id:"),
        ("fps", 0, "fps:"),
        ("surprise", 1, "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_scene_names_the_key(tmp_path: Path, key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_model(SceneConfig, write(tmp_path, with_change(key, value)))
    assert expected in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "scene.yaml"))


def test_light_without_stop_line_is_rejected(tmp_path: Path) -> None:
    data = {k: v for k, v in SCENE.items() if k != "stop_line"}
    with pytest.raises(ConfigError, match="stop_line: required when traffic_light"):
        load_model(SceneConfig, write(tmp_path, data))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("camera_id: a\nfps: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: invalid YAML"):
        load_model(SceneConfig, path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_model(SceneConfig, tmp_path / "nope.yaml")


def test_shipped_catalogue_is_valid() -> None:
    catalogue = load_catalogue()
    assert len(catalogue.cities["wuzhen"].cameras) >= 4
    assert len(catalogue.cities["hangzhou"].cameras) >= 4
    found = catalogue.camera("hangzhou-cam-03")
    assert found is not None and found[0] == "hangzhou"
    assert catalogue.camera("replayed-cam") is None


def test_catalogue_rejects_unknown_district(tmp_path: Path) -> None:
    data = yaml.safe_load(catalogue_path().read_text(encoding="utf-8"))
    data["cities"]["wuzhen"]["cameras"][0]["district"] = "atlantis"
    with pytest.raises(ConfigError, match=r"cities\.wuzhen: .*district 'atlantis'"):
        load_catalogue(write(tmp_path, data, "cities.yaml"))


runner = CliRunner()


def test_config_check_ok(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(write(tmp_path, SCENE))])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_config_check_bad_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = write(tmp_path, with_change("stop_line.points", [[1, 1], [1, 1]]))
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error {bad}: stop_line.points: must be 2 distinct points"]
    assert "Traceback" not in result.output


def test_config_check_unknown_kind(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(write(tmp_path, {"x": 1}))])
    assert result.exit_code == 2
    assert "not a known config file" in result.output
