"""The dispatcher's own Prometheus metrics, all built in one place.

faust's prometheus sensor adds the stream/consumer/producer metrics to the same registry,
and the faust web server serves both on ``/metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust import web
from faust.sensors.prometheus import MS_LATENCY_BUCKETS, FaustMetrics
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from services.dispatcher.core import DeadLetterReason
from services.dispatcher.faust_internals.monitor import BatchMonitor

# Detection-to-dispatch latency: the goal is p99 < 100 ms, so the buckets are dense from
# 1 ms to 250 ms; the tail up to 2 minutes shows backlogs after a Redis or Kafka outage.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# One pipelined batch write to local Redis takes well under a millisecond per hundred
# entries; anything past a second means Redis is struggling or away.
REDIS_WRITE_BUCKETS_S = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DispatcherMetrics:
    events: Counter
    dispatched: Counter
    duplicates: Counter
    grouped: Counter
    dead_lettered: Counter
    unknown_camera: Counter
    redis_retries: Counter
    latency: Histogram
    redis_write: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DispatcherMetrics:
        """Register every dispatcher metric in ``registry`` (a fresh one per test)."""
        dead_lettered = Counter(
            "citybrain_dead_lettered",
            "Messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=registry,
        )
        # Every reason shows from the start, at 0, so that rate() works from the first one.
        for reason in DeadLetterReason:
            dead_lettered.labels(reason=reason.value)
        return cls(
            events=Counter(
                "citybrain_dispatcher_events", "Messages consumed from Kafka", registry=registry
            ),
            dispatched=Counter(
                "citybrain_dispatched",
                "Entries written to the control-center queue",
                registry=registry,
            ),
            duplicates=Counter(
                "citybrain_duplicates_dropped",
                "Violations dropped because their id was already handled",
                registry=registry,
            ),
            grouped=Counter(
                "citybrain_grouped",
                "Repeats counted on an existing entry instead of creating one",
                registry=registry,
            ),
            dead_lettered=dead_lettered,
            unknown_camera=Counter(
                "citybrain_unknown_camera",
                "Entries dispatched for cameras that are not in the catalogue",
                registry=registry,
            ),
            redis_retries=Counter(
                "citybrain_redis_write_retries",
                "Control-center writes retried because Redis was unavailable",
                registry=registry,
            ),
            latency=Histogram(
                "citybrain_dispatch_latency_seconds",
                "From detection (event ts_ms) to the entry being written to the queue",
                buckets=LATENCY_BUCKETS_S,
                registry=registry,
            ),
            redis_write=Histogram(
                "citybrain_redis_write_seconds",
                "One batch write (pipelined appends) to the control-center queue",
                buckets=REDIS_WRITE_BUCKETS_S,
                registry=registry,
            ),
        )


def instrument(app: faust.App, registry: CollectorRegistry) -> None:
    """faust's prometheus sensor on ``registry``, and ``registry`` served on ``/metrics``."""
    metrics = FaustMetrics.create(registry, "citybrain_faust")
    # faust names this histogram "..._events_runtime_ms", which `promtool check metrics`
    # rejects (an abbreviated, non-base unit). faust observes milliseconds into it, so the
    # values stay and the unit moves from the name to the help text.
    registry.unregister(metrics.events_runtime_latency)
    runtime = Histogram(
        "citybrain_faust_events_runtime",
        "Event processing time in milliseconds, as faust measures it",
        buckets=MS_LATENCY_BUCKETS,
        registry=registry,
    )
    app.monitor = BatchMonitor(metrics=metrics._replace(events_runtime_latency=runtime))

    async def serve(view: web.View, request: web.Request) -> web.Response:
        return view.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/metrics")(serve)
