"""The local stack's Prometheus configuration: compose's, with the targets moved to 127.0.0.1.

``configs/prometheus/prometheus.yml`` (the compose file's) names its scrape jobs after the
compose services (``detector``, ``dispatcher``, ...). For a local stack each such job keeps
its settings and gets the local processes of that role as targets; a job with no local
counterpart is left out. Rule files are made absolute so the rendered file can live anywhere.
Without a compose configuration, one job per role is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PROMETHEUS_CONFIG = (
    Path(__file__).resolve().parents[2] / "configs" / "prometheus" / ("prometheus.yml")
)


def render_local_config(
    targets_by_job: Mapping[str, Sequence[str]],
    *,
    template: Path = DEFAULT_PROMETHEUS_CONFIG,
    scrape_interval_s: float = 2.0,
) -> str:
    """The Prometheus YAML for these ``job -> [host:port, ...]`` targets.

    >>> text = render_local_config({"detector": ["127.0.0.1:9102"]}, template=Path("/none"))
    >>> yaml.safe_load(text)["scrape_configs"][0]["static_configs"]
    [{'targets': ['127.0.0.1:9102']}]
    """
    config: dict[str, Any] = {}
    if template.is_file():
        loaded = yaml.safe_load(template.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            config = loaded
    interval = f"{scrape_interval_s:g}s"
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "evaluation_interval": interval,
    }
    config["rule_files"] = [
        str((template.parent / rule).resolve()) for rule in config.get("rule_files", [])
    ]
    jobs: list[dict[str, Any]] = []
    known = {job.get("job_name"): job for job in config.get("scrape_configs", [])}
    for name, targets in targets_by_job.items():
        if not targets:
            continue
        job = dict(known.get(name, {"job_name": name}))
        job.pop("dns_sd_configs", None)
        job.pop("scrape_interval", None)
        job["static_configs"] = [{"targets": list(targets)}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    config.pop("alerting", None)  # no Alertmanager in a local stack
    return yaml.safe_dump(config, sort_keys=False)
