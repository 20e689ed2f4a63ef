"""faust's prometheus sensor, fed a batch at a time: it writes the sensor's private metrics."""

from __future__ import annotations

from collections.abc import Sequence

from faust.sensors.prometheus import PrometheusMonitor
from faust.types import TP, Message


class BatchMonitor(PrometheusMonitor):
    """faust's prometheus sensor, told about the source topic's messages a batch at a time.

    The dispatcher's messages bypass faust's streams (see :mod:`.consumer`), whose per-message
    sensor calls cost as much as the dispatch itself. These two calls keep the same message
    counters and gauges that ``on_message_in``/``on_message_out`` keep, per batch.
    """

    def on_batch_in(self, tp: TP, messages: Sequence[Message]) -> None:
        count, last_offset = len(messages), messages[-1].offset
        self.messages_received_total += count
        self.messages_active += count
        self.messages_received_by_topic[tp.topic] += count
        self.tp_read_offsets[tp] = last_offset
        metrics = self._metrics
        metrics.messages_received.inc(count)
        metrics.active_messages.inc(count)
        metrics.messages_received_per_topics.labels(topic=tp.topic).inc(count)
        metrics.messages_received_per_topics_partition.labels(
            topic=tp.topic, partition=tp.partition
        ).set(last_offset)

    def on_batch_out(self, messages: Sequence[Message]) -> None:
        self.messages_active -= len(messages)
        self._metrics.active_messages.dec(len(messages))
