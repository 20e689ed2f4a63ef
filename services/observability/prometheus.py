"""Render the Prometheus configuration that scrapes a citybrain stack.

Compose and ``citybrain stack up`` scrape the same jobs with the same rules; only the way
targets are found differs. In compose a scaled service is one DNS name with one A record per
replica, so each job is a DNS service discovery (every replica scraped, each its own
``instance``). A local stack knows its processes' ports, so its jobs are static.

>>> text = render_prometheus_config(
...     {"detector": ["127.0.0.1:9102", "127.0.0.1:9112"]},
...     rule_files=["/etc/prometheus/alerts.yml"],
... )
>>> "127.0.0.1:9112" in text
True
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

# Frames arrive at 5 to 10 fps and the lag alert looks one minute back: a 5 s scrape gives
# twelve points a minute, enough for deriv() and rate() to see a trend without Prometheus
# itself becoming a noticeable load on a 2-core machine.
SCRAPE_INTERVAL_S = 5
EVALUATION_INTERVAL_S = 5
# Compose re-resolves a scaled service this often, so a new replica is scraped within 15 s.
DNS_REFRESH_S = 15

HEADER = (
    "# Rendered by services/observability/prometheus.py (render_prometheus_config); a test\n"
    "# checks that this file is what the function renders for docker-compose.yml.\n"
)


class Discovery(enum.StrEnum):
    """How Prometheus finds a job's targets."""

    STATIC = "static"  # host:port targets as given (a local stack)
    DNS = "dns"  # host is a compose service name; every A record is one replica


def _split_target(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"scrape target {target!r}: expected HOST:PORT")
    return host, int(port)


def _job(name: str, targets: Sequence[str], discovery: Discovery) -> dict[str, Any]:
    if not targets:
        raise ValueError(f"scrape job {name!r} has no targets")
    job: dict[str, Any] = {"job_name": name, "metrics_path": "/metrics"}
    if discovery is Discovery.STATIC:
        for target in targets:
            _split_target(target)
        job["static_configs"] = [{"targets": list(targets)}]
        return job
    by_port: dict[int, list[str]] = {}
    for target in targets:
        host, port = _split_target(target)
        by_port.setdefault(port, []).append(host)
    job["dns_sd_configs"] = [
        {"names": hosts, "type": "A", "port": port, "refresh_interval": f"{DNS_REFRESH_S}s"}
        for port, hosts in sorted(by_port.items())
    ]
    return job


def render_prometheus_config(
    targets: Mapping[str, Sequence[str]],
    *,
    rule_files: Sequence[str],
    discovery: Discovery = Discovery.STATIC,
    scrape_interval_s: float = SCRAPE_INTERVAL_S,
) -> str:
    """The ``prometheus.yml`` text scraping ``targets`` (job name -> ``HOST:PORT`` list).

    The job name is the service name (``detector``, ``dispatcher``...), which the alert rules
    and dashboard select on. Raises ``ValueError`` for a target that is not ``HOST:PORT``.
    """
    config = {
        "global": {
            "scrape_interval": f"{scrape_interval_s:g}s",
            "evaluation_interval": f"{min(scrape_interval_s, EVALUATION_INTERVAL_S):g}s",
            # A scrape of a busy detector must finish well within the interval.
            "scrape_timeout": f"{max(scrape_interval_s - 1, 1):g}s",
        },
        "rule_files": list(rule_files),
        "scrape_configs": [_job(name, list(t), discovery) for name, t in targets.items()],
    }
    return HEADER + yaml.safe_dump(config, sort_keys=False)


# What compose scrapes: job (the service, as the rules and dashboard name it) -> compose
# service:port. Redis is scraped through its exporter, since Redis has no /metrics itself.
COMPOSE_TARGETS: dict[str, list[str]] = {
    "simulator": ["simulator:9103"],
    "detector": ["detector:9102"],
    "dispatcher": ["dispatcher:6066"],
    "control-center": ["control-center:8080"],
    "redis": ["redis-exporter:9121"],
    "prometheus": ["prometheus:9090"],
    "grafana": ["grafana:3000"],
}
COMPOSE_RULE_FILES = ("/etc/prometheus/alerts.yml",)


def compose_prometheus_config() -> str:
    """``configs/prometheus/prometheus.yml``: the compose stack's scrape configuration."""
    return render_prometheus_config(
        COMPOSE_TARGETS, rule_files=COMPOSE_RULE_FILES, discovery=Discovery.DNS
    )


if __name__ == "__main__":
    # python -m services.observability.prometheus > configs/prometheus/prometheus.yml
    print(compose_prometheus_config(), end="")
