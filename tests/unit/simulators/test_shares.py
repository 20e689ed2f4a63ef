"""Which cameras a simulator replica owns, from the partitions its share group gives it."""

from __future__ import annotations

import threading

import pytest

from simulators.shares import cameras_for_partitions, follow_shares, shares_topic


@pytest.mark.parametrize(
    ("partitions", "count", "expected"),
    [
        ([0, 1, 2, 3], 4, ["a", "b", "c", "d"]),
        ([1, 3], 4, ["b", "d"]),
        ([], 4, []),
        ([0], 3, ["a", "d"]),  # fewer partitions than cameras: still every camera covered
    ],
)
def test_cameras_follow_their_partitions(
    partitions: list[int], count: int, expected: list[str]
) -> None:
    cameras = ["d", "c", "b", "a"]
    assert cameras_for_partitions(cameras, partitions=partitions, partition_count=count) == expected


def test_members_holding_disjoint_partitions_share_every_camera_exactly_once() -> None:
    cameras = [f"cam-{i:02d}" for i in range(11)]
    count = shares_topic(len(cameras)).partitions
    members = [range(0, count, 3), range(1, count, 3), range(2, count, 3)]
    owned = [cameras_for_partitions(cameras, partitions=m, partition_count=count) for m in members]
    assert sorted(c for share in owned for c in share) == sorted(cameras)


class _Shares:
    """A share group whose answer the test changes."""

    def __init__(self, owned: list[str]) -> None:
        self.now = owned

    def owned(self) -> list[str]:
        return list(self.now)


def test_the_feed_restarts_on_every_new_share_and_stops_with_the_replica() -> None:
    shares, stop = _Shares(["a", "b"]), threading.Event()
    runs: list[list[str]] = []

    def run_feed(owned: list[str], until: threading.Event) -> None:
        runs.append(owned)
        if len(runs) == 1:
            shares.now = ["b"]  # a rebalance took camera a away
        elif len(runs) == 2:
            shares.now = []  # more replicas than partitions: nothing to stream
            threading.Timer(0.05, lambda: setattr(shares, "now", ["c"])).start()
        else:
            stop.set()
        assert until.wait(5), "the feed was never told to stop"

    follow_shares(shares, run_feed, stop=stop, check_s=0.01)
    assert runs == [["a", "b"], ["b"], ["c"]]
