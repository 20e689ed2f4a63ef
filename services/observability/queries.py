"""Every metric name that the alert rules and the Grafana dashboards query.

A panel or rule that queries a name no service exports stays empty (or silent) without any
error, so tests check these names: statically against the services' code, and live against
a running stack's ``/metrics`` (``queried_series_names()`` is the list to check).

>>> sorted(metric_names("sum by (camera_id) (rate(citybrain_frames_processed_total[1m])) == 0"))
['citybrain_frames_processed_total']
>>> sorted(metric_names('histogram_quantile(0.99, sum by (le) (rate(x_bucket{job="a"}[5m]))) > 1'))
['x_bucket']
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
ALERTS_PATH = CONFIGS_DIR / "prometheus" / "alerts.yml"
DASHBOARDS_DIR = CONFIGS_DIR / "grafana" / "dashboards"

# Series Prometheus makes itself for every target; no service exports them.
SYNTHETIC_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)
# What is not a metric name: strings, label matchers, ranges, grouping label lists, and
# Grafana's $variables.
_NOT_NAMES = re.compile(
    r'"(?:\\.|[^"\\])*"'
    r"|'(?:\\.|[^'\\])*'"
    r"|\{[^}]*\}"
    r"|\[[^\]]*\]"
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    r"|\$\w+"
)
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric (series) names a PromQL expression selects; functions and labels excluded."""
    stripped = _NOT_NAMES.sub(" ", expr)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(stripped)
        if match.group(2) is None and match.group(1).lower() not in _KEYWORDS
    }


def alert_exprs(path: Path = ALERTS_PATH) -> Iterator[str]:
    """Every ``expr`` of a Prometheus rules file."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            yield str(rule["expr"])


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows hold their panels


def dashboard_exprs(path: Path) -> Iterator[str]:
    """Every query ``expr`` of a Grafana dashboard JSON file, rows included."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield str(target["expr"])


def queried_series_names(
    *, alerts_path: Path = ALERTS_PATH, dashboards_dir: Path = DASHBOARDS_DIR
) -> frozenset[str]:
    """Every series name the rules and dashboards query, as ``/metrics`` shows it
    (``..._total``, ``..._bucket``), without the ones Prometheus synthesises (``up``)."""
    exprs = list(alert_exprs(alerts_path))
    for path in sorted(dashboards_dir.glob("*.json")):
        exprs.extend(dashboard_exprs(path))
    names = set().union(*(metric_names(expr) for expr in exprs))
    return frozenset(names - SYNTHETIC_SERIES)
