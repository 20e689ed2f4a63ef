"""The stack file, its plan of processes, the camera fleet and the local Prometheus config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.common.config.catalogue import load_catalogue
from services.common.config.loader import ConfigError, load_model
from services.common.config.scene import SceneConfig
from services.stack.config import DEFAULT_STACK_PATH, StackConfig, load_stack_config
from services.stack.fleet import write_fleet
from services.stack.plan import StackPaths, plan_services, scrape_targets
from services.stack.prometheus import render_local_config
from simulators.config import load_simulator_config


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_shipped_stack_file_runs_two_detectors_and_a_dispatcher() -> None:
    config = load_stack_config(DEFAULT_STACK_PATH)
    assert config.detectors.replicas >= 2
    assert config.dispatchers.replicas >= 1
    assert config.frames.partitions >= config.detectors.replicas


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"detectors": {"replicas": 9}, "frames": {"partitions": 8}}, "detectors.replicas (9)"),
        ({"fleet": {"resolution": "720p"}}, "fleet.resolution: '720p': expected WIDTHxHEIGHT"),
        ({"simulators": {"cameras": 500}}, "simulators.cameras (500)"),
        ({"ports": {"redis": 9102}}, "ports.detector_metrics"),
        ({"ports": {"kafka": 70000}}, "ports.kafka: Input should be less than or equal to 65535"),
        ({"detectors": {"replica": 2}}, "detectors.replica: Extra inputs are not permitted"),
    ],
)
def test_a_bad_stack_file_names_the_key(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_stack_config(write(tmp_path, data))
    assert message in str(caught.value)


def test_plan_puts_detectors_in_one_group_on_their_own_ports(tmp_path: Path) -> None:
    config = StackConfig.model_validate(
        {"name": "t", "detectors": {"replicas": 3}, "simulators": {"replicas": 2, "cameras": 5}}
    )
    specs = plan_services(config, StackPaths(tmp_path), base_ids=load_catalogue().camera_ids())
    detectors = [s for s in specs if s.role == "detector"]
    assert [s.name for s in detectors] == ["detector-1", "detector-2", "detector-3"]
    groups = {s.argv[s.argv.index("--group-id") + 1] for s in detectors}
    assert groups == {"t-detector"}
    ports = [s.argv[s.argv.index("--metrics-port") + 1] for s in detectors]
    assert ports == ["9102", "9103", "9104"]
    cameras = [
        [s.argv[i + 1] for i, a in enumerate(s.argv) if a == "--camera"]
        for s in specs
        if s.role == "simulator"
    ]
    assert sorted(c for share in cameras for c in share) == sorted(
        ["wuzhen-cam-01", "wuzhen-cam-02", "wuzhen-cam-03", "wuzhen-cam-04", "hangzhou-cam-01"]
    )
    assert all("--metrics-host" in s.argv for s in specs if s.role in ("detector", "dispatcher"))
    assert scrape_targets(specs)["detector"] == [
        "127.0.0.1:9102",
        "127.0.0.1:9103",
        "127.0.0.1:9104",
    ]


def test_fleet_copies_keep_scene_and_district_at_the_fleet_rate(tmp_path: Path) -> None:
    paths = write_fleet(tmp_path, cameras=11, fps=5)
    ids = paths.camera_ids()
    assert len(ids) == 11 and ids[8] == "wuzhen-cam-01-r001"
    catalogue = load_catalogue(paths.catalogue)
    found = catalogue.camera("wuzhen-cam-01-r001")
    assert found is not None and found[1].district == "town"
    scene = load_model(SceneConfig, paths.scenes / "wuzhen-cam-01-r001.yaml")
    assert scene.camera_id == "wuzhen-cam-01-r001" and scene.fps == 5
    traffic = yaml.safe_load(paths.simulator_config.read_text())["cameras"]
    assert traffic["wuzhen-cam-01-r001"] == traffic["wuzhen-cam-01"]
    # The simulators read the fleet's file as they read the shipped one.
    written, shipped = load_simulator_config(paths.simulator_config), load_simulator_config()
    assert written.traffic("wuzhen-cam-01-r001") == shipped.traffic("wuzhen-cam-01")
    assert written.traffic("wuzhen-cam-02-r001") == shipped.traffic("wuzhen-cam-02")


def test_local_prometheus_scrapes_local_targets_with_the_alert_rules() -> None:
    rendered = yaml.safe_load(
        render_local_config({"detector": ["127.0.0.1:58102"], "simulator": []})
    )
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    assert "simulator" not in jobs
    assert jobs["detector"]["static_configs"] == [{"targets": ["127.0.0.1:58102"]}]
    assert all(Path(rule).is_absolute() and Path(rule).is_file() for rule in rendered["rule_files"])


def test_the_control_center_reads_the_queue_the_stacks_dispatchers_write(tmp_path: Path) -> None:
    config = StackConfig.model_validate({"name": "t"})
    specs = plan_services(config, StackPaths(tmp_path), base_ids=load_catalogue().camera_ids())
    writers = [s for s in specs if s.role == "dispatcher"]
    (reader,) = [s for s in specs if s.role == "control-center"]

    def prefix(argv: tuple[str, ...]) -> str:
        return argv[argv.index("--queue-prefix") + 1]

    assert writers and {prefix(s.argv) for s in writers} == {prefix(reader.argv)} == {"t"}
    assert reader.argv[reader.argv.index("--operators") + 1] == str(tmp_path / "operators.yaml")
