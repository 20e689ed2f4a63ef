"""Evidence sheets: three panels for a red-light runner, two for a parked car, a bounded ring."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from services.common.arrays import BGRImage
from services.common.config.scene import SceneConfig
from services.common.events import ViolationEvent, ViolationType
from services.common.frames import Frame
from services.detector import recorder as recorder_module
from services.detector.panels import Panel
from services.detector.pipeline import DetectorPipeline
from services.detector.recorder import (
    CLIP_FIELD,
    PANELS_FIELD,
    EvidenceRecorder,
    RecorderSettings,
)
from services.detector.signal import LightState
from tests.unit.detector.synth import (
    FPS,
    Vehicle,
    cycle,
    frames,
    parked_from_the_start,
    scene,
    straight,
)

STOP_LINE_Y = 200


def runner_car() -> Vehicle:
    return Vehicle(path=straight(start_xy=(300, 370), velocity_xy=(0, -8), first=30))


def parked_car() -> Vehicle:
    # Drives down into the kerb zone, stands 12 s (max_dwell_s is 5), then drives on.
    return Vehicle(
        path=straight(start_xy=(520, 60), velocity_xy=(0, 8), first=20, stop_at=38, stop_for=120),
        size_wh=(44, 70),
        bgr=(180, 170, 40),
    )


Sheets = list[tuple[ViolationEvent, list[Panel]]]


@pytest.fixture
def sheets(monkeypatch: pytest.MonkeyPatch) -> Sheets:
    """Every sheet the recorder composes, with the panels it chose."""
    composed: Sheets = []
    compose = recorder_module.compose_panels

    def spy(*, scene: SceneConfig, event: ViolationEvent, panels: list[Panel]) -> BGRImage:
        composed.append((event, panels))
        return compose(scene=scene, event=event, panels=panels)

    monkeypatch.setattr(recorder_module, "compose_panels", spy)
    return composed


def record(
    root: Path, source: list[Frame], *, settings: RecorderSettings | None = None
) -> tuple[list[ViolationEvent], EvidenceRecorder]:
    the_scene = scene()
    pipeline = DetectorPipeline(the_scene)
    recorder = EvidenceRecorder(root, settings=settings)
    events: list[ViolationEvent] = []
    for frame in source:
        result = recorder.observe(the_scene, frame, pipeline.process_frame(frame))
        events.extend(result.events)
    recorder.close()
    return events, recorder


@pytest.mark.parametrize("jpeg", [True, False])
def test_red_light_sheet_shows_before_at_and_past_the_line(
    tmp_path: Path, sheets: Sheets, jpeg: bool
) -> None:
    source = list(frames(110, [runner_car()], cycle(red=(40, 200)), jpeg=jpeg))
    events, recorder = record(tmp_path, source)
    [event] = events
    assert event.type == ViolationType.RED_LIGHT
    path = Path(event.model_dump()[PANELS_FIELD])
    assert path.is_file() and recorder.sheets_written == 1

    [(sheet_event, panels)] = sheets
    assert sheet_event.violation_id == event.violation_id
    before, at, after = panels
    assert [p.title for p in panels] == [
        "1 before the line",
        "2 crossing the line",
        "3 past the line",
    ]
    assert at.result.frame == event.frame
    # About a second either side (10 frames at 10 fps), all on red; a decoded feed keeps one
    # frame in 250 ms (2.5 frames) for the "before" panel.
    lead_frames = event.frame - round(FPS) - before.result.frame
    assert lead_frames == 0 if jpeg else 0 <= lead_frames < 2.5
    assert after.result.frame == event.frame + round(FPS)
    assert {p.result.signal for p in panels} == {LightState.RED}
    centres = []
    for panel in panels:
        track = panel.result.track(event.track_id)
        assert track is not None, f"the vehicle must be in panel {panel.title!r}"
        centres.append(track.centre_xy[1])
    assert centres[0] > STOP_LINE_Y > centres[2], "before the line, then past it"

    image = cv2.imread(str(path))
    assert image is not None
    height, width = image.shape[:2]
    assert height > 360 and width > 3 * 640, "three full panels, the crop, a caption"


def test_parking_sheet_shows_first_seen_in_zone_and_the_violation(
    tmp_path: Path, sheets: Sheets
) -> None:
    source = list(frames(200, [parked_car()], cycle(red=(10_000, 10_001))))
    events, _ = record(tmp_path, source)
    [event] = events
    assert event.type == ViolationType.ILLEGAL_PARKING
    assert Path(event.model_dump()[PANELS_FIELD]).is_file()
    [(_, panels)] = sheets
    first, at = panels
    assert [p.title for p in panels] == ["1 first seen in the zone", "2 at the violation"]
    assert at.result.frame == event.frame
    max_dwell_ms = scene().no_parking_zones[0].max_dwell_s * 1000
    assert event.ts_ms - first.result.ts_ms >= max_dwell_ms
    assert first.result.track(event.track_id) is not None


def test_sheet_waiting_for_its_last_panel_is_written_when_the_feed_ends(
    tmp_path: Path, sheets: Sheets
) -> None:
    # The clip stops 4 frames after the crossing: the "past" panel is the last frame there is.
    source = list(frames(60, [runner_car()], cycle(red=(40, 200))))
    events, _ = record(tmp_path, source)
    [event] = events
    [(_, panels)] = sheets
    assert panels[2].result.frame == 59
    assert Path(event.model_dump()[PANELS_FIELD]).is_file()


@pytest.mark.parametrize("jpeg", [True, False])
def test_parking_sheet_of_a_car_parked_from_the_first_frame_shows_that_frame(
    tmp_path: Path, sheets: Sheets, jpeg: bool
) -> None:
    """Found only when it has left, long after the ring let its frames go: the sheet shows
    it in the first frame (boxed there, and cropped from it) and its place when found."""
    source = list(
        frames(200, [parked_from_the_start(stand_s=12.0)], cycle(red=(10_000, 10_001)), jpeg=jpeg)
    )
    events, _ = record(tmp_path, source)
    [event] = events
    assert Path(event.model_dump()[PANELS_FIELD]).is_file()
    [(_, panels)] = sheets
    assert [p.title for p in panels] == [
        "1 in the zone at the first frame",
        "2 its place when found, after it left",
    ]
    assert panels[0].result.frame == 0 and panels[0].at_event_box
    assert event.decided_ts_ms is not None and panels[1].result.ts_ms == event.decided_ts_ms


def test_the_ring_of_a_decoded_feed_is_bounded(tmp_path: Path) -> None:
    settings = RecorderSettings(ring_s=2.0, sample_ms=250, recent_frames=4)
    source = list(frames(100, [], cycle(red=(40, 200)), jpeg=False))
    _, recorder = record(tmp_path, source, settings=settings)
    # 2 s of history at one frame per 250 ms (both ends included), plus the 4 newest frames,
    # plus the first frame (as JPEG).
    assert recorder.held_frames() <= 2000 // 250 + 1 + 4 + 1
    assert recorder.held_bytes() <= (2000 // 250 + 1 + 4 + 1) * 640 * 360 * 3


def test_the_ring_of_a_jpeg_feed_holds_the_bytes_as_they_came(tmp_path: Path) -> None:
    source = list(frames(100, [], cycle(red=(40, 200))))
    _, recorder = record(tmp_path, source, settings=RecorderSettings(ring_s=2.0))
    # Every frame of the last 2 s, the newest ones shared with the history, and the first.
    assert recorder.held_bytes() == sum(len(f.jpeg or b"") for f in [source[0], *source[-21:]])


@pytest.mark.parametrize("jpeg", [True, False])
def test_clip_covers_two_seconds_either_side_of_the_violation(tmp_path: Path, jpeg: bool) -> None:
    source = list(frames(110, [runner_car()], cycle(red=(40, 200)), jpeg=jpeg))
    events, recorder = record(tmp_path, source, settings=RecorderSettings(clip_s=2.0))
    [event] = events
    path = Path(event.model_dump()[CLIP_FIELD])
    assert path.is_file() and recorder.clips_written == 1
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        640,
        360,
    )
    # Every frame from 2 s before to 2 s after, at 10 fps.
    assert count == 2 * 2 * round(FPS) + 1
