"""Which cameras a simulator replica owns, from the partitions its share group gives it."""

from __future__ import annotations

import pytest

from simulators.shares import cameras_for_partitions, shares_topic


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
