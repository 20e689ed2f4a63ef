"""The control center's Prometheus metrics, built in one place."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# API answers are a few ms from Redis; the top buckets catch a stalled pool or Argon2 checks
# piling up, which is what the 100 ms p99 goal is about.
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class ControlCenterMetrics:
    requests: Counter
    request_seconds: Histogram
    auth_failures: Counter
    status_changes: Counter
    conflicts: Counter
    stream_clients: Gauge
    archived: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ControlCenterMetrics:
        return cls(
            requests=Counter(
                "citybrain_control_center_requests_total",
                "API requests answered, by route and status code",
                ["route", "code"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "citybrain_control_center_request_seconds",
                "Time to answer an API request (to the first byte for streams)",
                ["route"],
                buckets=REQUEST_BUCKETS_S,
                registry=registry,
            ),
            auth_failures=Counter(
                "citybrain_control_center_auth_failures_total",
                "Requests refused for a missing, unknown or rate-limited token",
                registry=registry,
            ),
            status_changes=Counter(
                "citybrain_control_center_status_changes_total",
                "Status changes made by operators, by new status",
                ["status"],
                registry=registry,
            ),
            conflicts=Counter(
                "citybrain_control_center_status_conflicts_total",
                "Status changes refused with 409 (workflow or a concurrent change)",
                registry=registry,
            ),
            stream_clients=Gauge(
                "citybrain_control_center_stream_clients",
                "Open live streams (dashboards)",
                registry=registry,
            ),
            archived=Counter(
                "citybrain_control_center_archived_total",
                "Closed entries moved from Redis to the archive",
                registry=registry,
            ),
        )
