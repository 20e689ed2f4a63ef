"""``citybrain_consumer_lag_messages{group,topic,partition}``: every consuming service's lag.

One gauge shape for the detectors and the dispatchers, so one dashboard panel and one
alert rule cover both. A partition that moves to another consumer is removed from this
one's gauge, so two processes never both report the same partition.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge

LAG_METRIC = "citybrain_consumer_lag_messages"


class ConsumerLagGauge:
    """The lag of one consumer group member, set from ``(topic, partition) -> messages``.

    >>> registry = CollectorRegistry()
    >>> gauge = ConsumerLagGauge(registry, group="g")
    >>> gauge.update({("frames", 0): 5})
    >>> registry.get_sample_value(LAG_METRIC, {"group": "g", "topic": "frames", "partition": "0"})
    5.0
    >>> gauge.update({})
    >>> registry.get_sample_value(LAG_METRIC, {"group": "g", "topic": "frames", "partition": "0"})
    """

    def __init__(self, registry: CollectorRegistry, *, group: str) -> None:
        self._group = group
        self._gauge = Gauge(
            LAG_METRIC,
            "Messages between this consumer's position and the end of each of its partitions.",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self._reported: set[tuple[str, int]] = set()

    def update(self, lags: Mapping[tuple[str, int], int]) -> None:
        for topic, partition in self._reported - set(lags):
            self._gauge.remove(self._group, topic, str(partition))
        for (topic, partition), lag in lags.items():
            self._gauge.labels(group=self._group, topic=topic, partition=str(partition)).set(lag)
        self._reported = set(lags)
