"""The live feed: every camera streamed at its capture times, late frames skipped and told."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry

from services.common.bus.memory import InMemoryBus
from services.common.frames import FRAMES_TOPIC, frame_from_message
from services.loadtest.run import RENDER_AHEAD_S
from simulators.live import (
    RENDER_AHEAD_CHUNK_S,
    LiveFeedMetrics,
    LiveFeedSettings,
    run_live_feed,
)

CAMERAS = ("wuzhen-cam-01", "wuzhen-cam-02", "hangzhou-cam-03")


def settings(**overrides: object) -> LiveFeedSettings:
    base: dict[str, object] = {
        "camera_ids": CAMERAS,
        "catalogue_path": None,
        "simulator_config_path": None,
        "resolution_wh": (160, 90),
        "fps": 10.0,
        "start_ts_ms": int(time.time() * 1000),
        "seconds": 1.0,
    }
    base.update(overrides)
    return LiveFeedSettings(**base)  # type: ignore[arg-type]


def test_every_camera_is_streamed_in_capture_order() -> None:
    bus = InMemoryBus()
    consumer = bus.subscribe([FRAMES_TOPIC.name], group_id="t")
    summary = run_live_feed(
        bus,
        settings(),
        metrics=LiveFeedMetrics.create(CollectorRegistry()),
        stop=threading.Event(),
        truth_sink=lambda _v: None,
    )
    frames = [frame_from_message(m) for m in consumer.poll(timeout_s=1, max_records=1000)]
    assert {f.camera_id for f in frames} == set(CAMERAS)
    assert summary.published == len(frames) == 30
    for camera in CAMERAS:
        stamps = [f.ts_ms for f in frames if f.camera_id == camera]
        assert stamps == sorted(stamps)


def test_a_feed_that_starts_late_skips_and_reports_the_late_frames() -> None:
    dropped: list[tuple[str, int]] = []
    summary = run_live_feed(
        InMemoryBus(),
        settings(start_ts_ms=int(time.time() * 1000) - 5_000, seconds=6.0),
        metrics=LiveFeedMetrics.create(CollectorRegistry()),
        stop=threading.Event(),
        truth_sink=lambda _v: None,
        drop_sink=lambda camera, ts: dropped.append((camera, ts)),
    )
    assert summary.dropped_late == len(dropped) > 0
    assert summary.published + summary.dropped_late == 3 * 60


def test_cameras_with_slots_are_dealt_over_the_partitions() -> None:
    bus = InMemoryBus(default_partitions=2)
    consumer = bus.subscribe([FRAMES_TOPIC.name], group_id="t")
    run_live_feed(
        bus,
        settings(seconds=0.3, slots={camera: slot for slot, camera in enumerate(CAMERAS)}),
        metrics=LiveFeedMetrics.create(CollectorRegistry()),
        stop=threading.Event(),
        truth_sink=lambda _v: None,
    )
    messages = consumer.poll(timeout_s=1, max_records=1000)
    assert {(frame_from_message(m).camera_id, m.partition) for m in messages} == {
        ("wuzhen-cam-01", 0),
        ("wuzhen-cam-02", 1),
        ("hangzhou-cam-03", 0),
    }


def test_a_feed_that_renders_ahead_sends_the_same_frames_and_says_when_it_is_ready() -> None:
    # Both feeds get the same capture times; the second one's frames are then up to half a
    # second late, which is not late enough to be skipped.
    start_ts_ms = int(time.time() * 1000)

    def streamed(render_ahead: bool) -> tuple[list[tuple[str, int, int, bytes]], float]:
        bus = InMemoryBus()
        consumer = bus.subscribe([FRAMES_TOPIC.name], group_id="t")
        registry = CollectorRegistry()
        run_live_feed(
            bus,
            settings(start_ts_ms=start_ts_ms, seconds=0.5, render_ahead=render_ahead),
            metrics=LiveFeedMetrics.create(registry),
            stop=threading.Event(),
            truth_sink=lambda _v: None,
        )
        frames = [frame_from_message(m) for m in consumer.poll(timeout_s=1, max_records=1000)]
        ready = registry.get_sample_value("citybrain_camera_feed_ready")
        assert ready is not None
        return [(f.camera_id, f.index, f.ts_ms, f.jpeg or b"") for f in frames], ready

    live, _ = streamed(render_ahead=False)
    ahead, ready = streamed(render_ahead=True)
    assert ahead == live
    assert len(ahead) == 15
    assert ready == 1


def test_the_load_test_waits_as_long_as_a_feed_renders_ahead() -> None:
    assert RENDER_AHEAD_S == RENDER_AHEAD_CHUNK_S
