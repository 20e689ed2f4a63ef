"""The Prometheus configuration, alert rules and Grafana dashboard, checked by promtool and
against what the services export and what compose runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.observability.prometheus import (
    COMPOSE_TARGETS,
    Discovery,
    compose_prometheus_config,
    render_prometheus_config,
)
from services.observability.queries import (
    ALERTS_PATH,
    DASHBOARDS_DIR,
    dashboard_exprs,
    metric_names,
    queried_series_names,
)
from tests.unit.deploy.compose import ROOT, load_compose

PROMETHEUS_DIR = ROOT / "configs" / "prometheus"
GRAFANA_DIR = ROOT / "configs" / "grafana"
CODE_DIRS = (ROOT / "services", ROOT / "simulators")
# The option that sets the port each citybrain subcommand serves /metrics on.
METRICS_PORT_OPTION = {
    "simulate-live": "--metrics-port",
    "detect": "--metrics-port",
    "dispatch": "--metrics-port",
    "control-center": "--port",
}
# Images that serve /metrics on a fixed port of their own.
IMAGE_METRICS_PORTS = {
    "prom/prometheus": 9090,
    "grafana/grafana": 3000,
    "oliver006/redis_exporter": 9121,
}
REQUIRED_PANELS = (
    "Frames per second per camera",
    "Frames per second per detector",
    "Detector stage latency (p50, p95, p99)",
    "Violations per minute by type and city",
    "Dispatcher throughput",
    "Consumer lag",
    "Dead letters and dropped frames",
    "End-to-end latency (capture to control-center entry)",
)
REQUIRED_ALERTS = {
    "CitybrainServiceDown",
    "CitybrainConsumerLagGrowing",
    "CitybrainDeadLetters",
    "CitybrainEndToEndLatencyHigh",
    "CitybrainCameraSilent",
}


def promtool(*args: str, cwd: Path = ROOT) -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (.ci/run does)"
    done = subprocess.run(
        [path, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_committed_prometheus_yml_is_the_rendered_one() -> None:
    committed = (PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8")
    assert committed == compose_prometheus_config(), (
        "run: python -m services.observability.prometheus > configs/prometheus/prometheus.yml"
    )


def test_promtool_accepts_the_compose_and_the_local_configuration(tmp_path: Path) -> None:
    promtool("check", "config", "--syntax-only", str(PROMETHEUS_DIR / "prometheus.yml"))
    rules = str(ALERTS_PATH)
    for discovery, targets in (
        (Discovery.DNS, COMPOSE_TARGETS),
        (Discovery.STATIC, {"detector": ["127.0.0.1:9102", "127.0.0.1:9112"]}),
    ):
        path = tmp_path / f"{discovery}.yml"
        path.write_text(render_prometheus_config(targets, rule_files=[rules], discovery=discovery))
        promtool("check", "config", str(path))


def test_a_target_that_is_not_host_port_is_refused() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        render_prometheus_config({"detector": ["detector"]}, rule_files=[])


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_every_prometheus_target_is_a_compose_service_and_port_that_serves_metrics() -> None:
    services = load_compose()["services"]
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    scraped = set()
    for job in config["scrape_configs"]:
        assert job["metrics_path"] == "/metrics"
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                assert name in services, f"job {job['job_name']}: no compose service {name!r}"
                service = services[name]
                image = str(service["image"])
                if image.startswith("citybrain:"):
                    argv = service["command"]
                    served = int(_option(argv, METRICS_PORT_OPTION[argv[0]]))
                else:
                    served = IMAGE_METRICS_PORTS[image.partition(":")[0]]
                assert sd["port"] == served, f"{name} serves /metrics on {served}"
                scraped.add(name)
    citybrain = {n for n, s in services.items() if str(s.get("image", "")).startswith("citybrain:")}
    assert citybrain <= scraped, "every citybrain service is scraped"


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    assert "SUCCESS" in promtool("check", "rules", str(ALERTS_PATH))
    promtool("test", "rules", "alerts.test.yml", cwd=PROMETHEUS_DIR)
    document = yaml.safe_load(ALERTS_PATH.read_text(encoding="utf-8"))
    alerts = {rule["alert"] for group in document["groups"] for rule in group["rules"]}
    assert alerts == REQUIRED_ALERTS
    tests = (PROMETHEUS_DIR / "alerts.test.yml").read_text(encoding="utf-8")
    assert set(re.findall(r"alertname: (\w+)", tests)) == REQUIRED_ALERTS, "each one tested"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((DASHBOARDS_DIR / "citybrain.json").read_text())
    return result


def test_the_dashboard_has_the_panels_load_testers_look_at(dashboard: dict[str, Any]) -> None:
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert set(REQUIRED_PANELS) <= set(titles)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(titles)
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]


def test_the_dashboard_uses_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = provisioned["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "citybrain.yml").read_text()
    )
    mount = next(
        v
        for v in load_compose()["services"]["grafana"]["volumes"]
        if v.startswith("./configs/grafana/dashboards:")
    )
    assert mount.split(":")[1] == provider["providers"][0]["options"]["path"]


def test_every_dashboard_query_parses_in_prometheus(tmp_path: Path) -> None:
    """promtool checks PromQL in rules files, so each panel query becomes a rule."""
    exprs = [
        e.replace("$__rate_interval", "1m")
        for p in DASHBOARDS_DIR.glob("*.json")
        for e in dashboard_exprs(p)
    ]
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:query_{i}", "expr": e} for i, e in enumerate(exprs)
    ]}]}  # fmt: skip
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool("check", "rules", str(path))


def _family(series: str) -> str:
    for suffix in ("_total", "_bucket", "_count", "_sum"):
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def test_every_queried_metric_is_defined_by_a_service() -> None:
    """A static check; the live-stack test checks the same names on a running stack's
    /metrics (``queried_series_names()``)."""
    sources = "\n".join(
        path.read_text(encoding="utf-8") for d in CODE_DIRS for path in d.rglob("*.py")
    )
    names = queried_series_names()
    assert "citybrain_frames_processed_total" in names and "up" not in names
    undefined = sorted(n for n in names if f'"{_family(n)}"' not in sources)
    assert not undefined, f"queried but no service defines: {undefined}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up == 0", {"up"}),
        ('sum by (reason) (increase(x_total{reason="a b"}[5m])) > 0', {"x_total"}),
        ("a_total + on (camera_id) group_left b_total", {"a_total", "b_total"}),
        ("rate(a[$__rate_interval]) * 60 unless b offset 5m", {"a", "b"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m])))", {"h_bucket"}),
    ],
)
def test_metric_names_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
