"""Which cameras this simulator replica streams: its share, handed out by a Kafka consumer group.

Every replica joins one consumer group on a small ``simulator-shares`` topic that nobody
writes to. Kafka's group coordinator assigns each partition to exactly one live member, and
camera ``i`` of the sorted catalogue belongs to partition ``i % partitions``. So a replica owns
the cameras of the partitions it is assigned: a new replica takes some over at the next
rebalance, and a dead one's cameras move to the others once its session times out. No replica
needs an index, a count or a coordinator of our own, which compose cannot give a scaled
service anyway.

>>> cameras_for_partitions(["a", "b", "c"], partitions=[0], partition_count=2)
['a', 'c']
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from services.common.bus import BusError, TopicSpec
from services.common.bus.kafka import BOOTSTRAP_TIMEOUT_MS, KafkaBus

log = logging.getLogger(__name__)

SHARES_TOPIC_NAME = "simulator-shares"
DEFAULT_SHARE_GROUP = "citybrain-simulator"
# A replica that dies hands its cameras over after this long without a heartbeat.
SESSION_TIMEOUT_MS = 10_000
# The poll thread's longest wait; a close takes at most this long.
POLL_MS = 500
# How often a replica compares its share with the group's (so how soon it follows a rebalance).
SHARE_CHECK_S = 1.0


def shares_topic(camera_count: int, name: str = SHARES_TOPIC_NAME) -> TopicSpec:
    """One partition per camera, so that any number of replicas up to it gets a share."""
    return TopicSpec(name=name, partitions=max(camera_count, 1), retention_ms=60_000)


def cameras_for_partitions(
    camera_ids: Sequence[str], *, partitions: Iterable[int], partition_count: int
) -> list[str]:
    """The cameras owned by whoever holds ``partitions``, in catalogue order.

    Camera ``i`` of ``sorted(camera_ids)`` lives on partition ``i % partition_count``, so a
    topic created with fewer partitions than cameras still covers every camera.
    """
    if partition_count < 1:
        raise ValueError("partition_count must be at least 1")
    held = set(partitions)
    ordered = sorted(camera_ids)
    return [camera for i, camera in enumerate(ordered) if i % partition_count in held]


class KafkaCameraShares:
    """This replica's membership of the share group; ``owned()`` is its current share.

    A background thread polls the group: a join or rebalance takes several round trips that
    only a blocking poll completes, and the frame loop must never wait on them.
    """

    def __init__(
        self,
        bus: KafkaBus,
        *,
        camera_ids: Sequence[str],
        group_id: str,
        topic: str = SHARES_TOPIC_NAME,
    ) -> None:
        self._camera_ids = sorted(camera_ids)
        bus.ensure_topics([shares_topic(len(self._camera_ids), topic)])
        self._partition_count = bus.partition_count(topic)
        try:
            self._consumer = KafkaConsumer(
                topic,
                bootstrap_servers=bus.bootstrap_servers,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                client_id="citybrain-simulator",
                group_id=group_id,
                enable_auto_commit=False,
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=SESSION_TIMEOUT_MS // 4,
            )
        except KafkaError as exc:
            raise BusError(f"cannot join share group {group_id!r}: {exc}") from exc
        self._lock = threading.Lock()
        self._owned: list[str] = []
        self._error: KafkaError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="share-group", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # Nothing is ever written to the topic: the poll only drives the group protocol.
                self._consumer.poll(timeout_ms=POLL_MS)
                owned = cameras_for_partitions(
                    self._camera_ids,
                    partitions=(tp.partition for tp in self._consumer.assignment()),
                    partition_count=self._partition_count,
                )
                with self._lock:
                    self._owned = owned
        except KafkaError as exc:
            log.error("share group poll failed: %s", exc)
            with self._lock:
                self._owned, self._error = [], exc
        finally:
            # Leaving the group at once lets the others take this replica's cameras now.
            self._consumer.close(autocommit=False)

    def owned(self) -> list[str]:
        """The cameras this replica streams now; raises ``BusError`` if the group was lost."""
        with self._lock:
            if self._error is not None:
                raise BusError(f"share group poll failed: {self._error}")
            return list(self._owned)

    def close(self) -> None:
        """Leave the group and wait for the poll thread to end."""
        self._stop.set()
        self._thread.join()


class CameraShares(Protocol):
    def owned(self) -> list[str]: ...


def follow_shares(
    shares: CameraShares,
    run_feed: Callable[[list[str], threading.Event], None],
    *,
    stop: threading.Event,
    check_s: float = SHARE_CHECK_S,
) -> None:
    """Run ``run_feed(cameras, epoch_stop)`` on this replica's share until ``stop``.

    ``epoch_stop`` is set when the share changes (the feed returns, and starts again on the
    new share) or when ``stop`` is set. With no share (more replicas than partitions) it
    waits for one.
    """
    while not stop.is_set():
        owned = shares.owned()
        if not owned:
            stop.wait(check_s)
            continue
        log.info("streaming %d cameras: %s", len(owned), ", ".join(owned))
        epoch_stop = threading.Event()

        def watch(owned: list[str] = owned, epoch_stop: threading.Event = epoch_stop) -> None:
            while not epoch_stop.wait(check_s):
                if stop.is_set() or shares.owned() != owned:
                    epoch_stop.set()

        watcher = threading.Thread(target=watch, name="share-watch", daemon=True)
        watcher.start()
        try:
            run_feed(owned, epoch_stop)
        finally:
            epoch_stop.set()
            watcher.join()
