"""The live feed's schedule and the share mapping, without Kafka or a clock."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from simulators.feed import SimulatedCamera, simulate_camera
from simulators.live import LiveFeed
from simulators.shares import cameras_for_partitions, shares_topic

SMALL = (320, 180)


def _factory(seconds: float = 1.0) -> tuple[LiveFeed, list[tuple[str, int, int]]]:
    made: list[tuple[str, int, int]] = []

    def make(camera_id: str, segment: int, start_ts_ms: int) -> SimulatedCamera:
        made.append((camera_id, segment, start_ts_ms))
        return simulate_camera(
            camera_id, seconds=seconds, seed=segment, resolution_wh=SMALL, start_ts_ms=start_ts_ms
        )

    return LiveFeed(make), made


def test_frames_are_due_at_their_capture_times_in_capture_order() -> None:
    feed, _ = _factory()
    feed.own(["wuzhen-cam-01", "hangzhou-cam-03"], now_ms=10_000)
    assert feed.next_due_ms() == 10_000
    due = feed.take_due(now_ms=10_150)
    assert [f.ts_ms for f in due.frames] == sorted(f.ts_ms for f in due.frames)
    assert {(f.camera_id, f.index) for f in due.frames} == {
        ("wuzhen-cam-01", 0),
        ("wuzhen-cam-01", 1),
        ("hangzhou-cam-03", 0),
        ("hangzhou-cam-03", 1),
    }
    assert feed.take_due(now_ms=10_150).frames == []
    assert feed.next_due_ms() == 10_200


def test_every_frame_is_a_jpeg_of_the_right_size() -> None:
    feed, _ = _factory()
    feed.own(["wuzhen-cam-02"], now_ms=0)
    for frame in feed.take_due(now_ms=500).frames:
        assert frame.jpeg is not None
        img = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (SMALL[1], SMALL[0], 3)


def test_a_camera_rolls_over_to_its_next_segment_with_continuing_index_and_time() -> None:
    feed, made = _factory(seconds=1.0)  # 10 frames at 10 fps
    feed.own(["wuzhen-cam-01"], now_ms=0)
    frames = feed.take_due(now_ms=700).frames + feed.take_due(now_ms=1_450).frames
    assert [f.index for f in frames] == list(range(15))
    assert [f.ts_ms for f in frames] == [i * 100 for i in range(15)]
    assert made == [("wuzhen-cam-01", 0, 0), ("wuzhen-cam-01", 1, 1_000)]


def test_frames_more_than_a_second_late_are_skipped_and_counted_not_sent() -> None:
    feed, _ = _factory(seconds=5.0)
    feed.own(["wuzhen-cam-01"], now_ms=0)
    due = feed.take_due(now_ms=2_500)
    assert due.skipped == {"wuzhen-cam-01": 15}  # 0 .. 1400 ms
    assert due.frames[0].ts_ms == 1_500


def test_owning_a_new_share_starts_new_cameras_now_and_drops_lost_ones() -> None:
    feed, made = _factory()
    feed.own(["wuzhen-cam-01", "wuzhen-cam-02"], now_ms=0)
    feed.take_due(now_ms=300)
    feed.own(["wuzhen-cam-02", "hangzhou-cam-01"], now_ms=400)
    assert feed.owned == ["hangzhou-cam-01", "wuzhen-cam-02"]
    frames = feed.take_due(now_ms=400).frames
    assert {f.camera_id for f in frames} == {"hangzhou-cam-01", "wuzhen-cam-02"}
    assert ("hangzhou-cam-01", 0, 400) in made
    feed.own([], now_ms=500)
    assert feed.next_due_ms() is None


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
