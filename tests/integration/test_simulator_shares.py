"""Simulator replicas share the cameras through a real Kafka consumer group."""

from __future__ import annotations

import time
from collections.abc import Callable

from services.common.bus.kafka import KafkaBus
from simulators.shares import KafkaCameraShares

CAMERAS = [f"cam-{i:02d}" for i in range(6)]
# A join or a failover takes a rebalance; the session timeout (10 s) bounds a dead member's.
SETTLE_S = 60.0


def _settle(members: list[KafkaCameraShares], done: Callable[[list[list[str]]], bool]) -> None:
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        shares = [m.owned() for m in members]
        if done(shares):
            return
        time.sleep(0.2)
    raise AssertionError(f"shares never settled: {[m.owned() for m in members]}")


def _covers_once(shares: list[list[str]]) -> bool:
    owned = sorted(c for share in shares for c in share)
    return owned == CAMERAS and all(shares)


def test_two_replicas_split_the_cameras_and_one_takes_all_when_the_other_leaves(
    kafka_bootstrap: str, unique_name: str
) -> None:
    bus = KafkaBus(bootstrap_servers=kafka_bootstrap)
    first = KafkaCameraShares(bus, camera_ids=CAMERAS, group_id=unique_name, topic=unique_name)
    second = KafkaCameraShares(bus, camera_ids=CAMERAS, group_id=unique_name, topic=unique_name)
    try:
        _settle([first], lambda shares: shares[0] == CAMERAS)
        _settle([first, second], _covers_once)
        second.close()
        _settle([first], lambda shares: shares[0] == CAMERAS)
    finally:
        first.close()
        bus.close()
