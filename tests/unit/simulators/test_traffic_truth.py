"""The model and its ground truth: determinism, no overlaps, and the rules re-derived."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from functools import cache

import numpy as np
import pytest

from services.common.config.catalogue import CameraKind, load_catalogue
from simulators.feed import SimulatedCamera, simulate_camera
from simulators.traffic import Role, VehicleKind

_CATALOGUED = [cam for city in load_catalogue().cities.values() for cam in city.cameras]
CAMERAS = [cam.camera_id for cam in _CATALOGUED]
INTERSECTIONS = [cam.camera_id for cam in _CATALOGUED if cam.kind is CameraKind.INTERSECTION]
STREETS = [cam.camera_id for cam in _CATALOGUED if cam.kind is CameraKind.STREET]


@cache
def minute(camera_id: str, seed: int = 0) -> SimulatedCamera:
    """60 s of one camera; truth needs no rendering, so this is cheap."""
    return simulate_camera(camera_id, seconds=60, seed=seed)


def test_same_seed_gives_identical_frames_and_truth() -> None:
    kwargs = {"seconds": 1.5, "seed": 7, "resolution_wh": (320, 180), "variant": "rain"}
    a, b = simulate_camera("wuzhen-cam-02", **kwargs), simulate_camera("wuzhen-cam-02", **kwargs)
    assert a.truth == b.truth and a.frame_truth == b.frame_truth
    for fa, fb in zip(a.frames(), b.frames(), strict=True):
        assert fa.index == fb.index and fa.ts_ms == fb.ts_ms
        assert np.array_equal(fa.bgr, fb.bgr)
    other = simulate_camera("wuzhen-cam-02", **{**kwargs, "seed": 8})
    assert other.frame_truth != a.frame_truth


@pytest.mark.parametrize("camera_id", CAMERAS)
def test_vehicles_never_overlap(camera_id: str) -> None:
    camera = minute(camera_id)
    for index in range(camera.n_frames):
        boxes = camera.vehicle_boxes(index)
        for p, q in itertools.combinations(boxes, 2):
            (px, py, pw, ph), (qx, qy, qw, qh) = p.bbox_xywh, q.bbox_xywh
            overlap_x = min(px + pw, qx + qw) - max(px, qx)
            overlap_y = min(py + ph, qy + qh) - max(py, qy)
            assert overlap_x <= 0 or overlap_y <= 0, (index, p, q)


def _inside(point: tuple[float, float], polygon: list[tuple[float, float]]) -> bool:
    """Ray casting, with points on an edge counted inside."""
    x, y = point
    inside = False
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        on_edge = (x1 - x0) * (y - y0) == (y1 - y0) * (x - x0)
        if on_edge and min(x0, x1) <= x <= max(x0, x1) and min(y0, y1) <= y <= max(y0, y1):
            return True
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _recompute(camera: SimulatedCamera) -> set[tuple[str, int, int]]:
    """The contract rules, applied to the per-frame boxes from scratch."""
    tracks: dict[int, list[tuple[int, tuple[int, int, int, int]]]] = defaultdict(list)
    for index in range(camera.n_frames):
        for box in camera.vehicle_boxes(index):
            tracks[box.vehicle_id].append((index, box.bbox_xywh))
    scene, events = camera.scene, set()
    for vehicle_id, track in tracks.items():
        centres = np.array([(x + w / 2, y + h / 2) for _, (x, y, w, h) in track])
        if scene.stop_line is not None:
            a, b = np.array(scene.stop_line.points)
            signed = (centres - a) @ np.array(scene.stop_line.travel_direction)
            along = (centres - a) @ (b - a) / np.dot(b - a, b - a)
            crossings = [
                track[k][0]
                for k in range(1, len(track))
                if signed[k - 1] <= 0 < signed[k] and 0 <= along[k] <= 1
            ]
            red = [f for f in crossings if camera.light_state(f) == "red"]
            if red:
                events.add(("red_light", vehicle_id, red[0]))
        for box, run in itertools.groupby(track, key=lambda item: item[1]):
            frames = [f for f, _ in run]
            x, y, w, h = box
            for zone in scene.no_parking_zones:
                if _inside((x + w / 2, y + h / 2), list(zone.polygon)):
                    needed = math.ceil(zone.max_dwell_s * scene.fps - 1e-6)
                    if frames[-1] - frames[0] >= needed:
                        events.add(("illegal_parking", vehicle_id, frames[0] + needed))
    return events


@pytest.mark.parametrize(("camera_id", "seed"), [(c, s) for c in CAMERAS for s in (0, 1)])
def test_truth_agrees_with_an_independent_reading_of_the_rules(camera_id: str, seed: int) -> None:
    camera = minute(camera_id, seed)
    truth = {(v.type.value, v.vehicle_id, v.frame) for v in camera.truth}
    assert truth == _recompute(camera)
    for violation in camera.truth:
        assert violation.ts_ms == camera.ts_ms(violation.frame)
        assert violation.camera_id == camera_id


@pytest.mark.parametrize("camera_id", CAMERAS)
def test_each_camera_shows_several_violations_a_minute(camera_id: str) -> None:
    assert len(minute(camera_id).truth) >= 2


@pytest.mark.parametrize("camera_id", INTERSECTIONS)
def test_only_runners_break_the_red_light(camera_id: str) -> None:
    camera = minute(camera_id)
    offenders = {v.vehicle_id for v in camera.truth}
    runners = {vid for vid, role in camera.roles.items() if role is Role.RUNNER}
    assert offenders and offenders <= runners
    amber = [vid for vid, role in camera.roles.items() if role is Role.AMBER_CROSSER]
    assert amber and not offenders & set(amber)
    # Vehicles stood still at the line during red, and none of them is in the truth.
    stopped_at_red = {
        box.vehicle_id
        for f in range(1, camera.n_frames)
        if camera.light_state(f) == "red"
        for box in camera.vehicle_boxes(f)
        if box in camera.vehicle_boxes(f - 1)
    }
    assert stopped_at_red and not stopped_at_red & offenders


@pytest.mark.parametrize("camera_id", INTERSECTIONS)
def test_amber_crossers_cross_during_amber(camera_id: str) -> None:
    camera = minute(camera_id, 1)
    assert camera.scene.stop_line is not None
    line_y = camera.scene.stop_line.points[0]
    direction = np.array(camera.scene.stop_line.travel_direction)
    for vid, role in camera.roles.items():
        if role is not Role.AMBER_CROSSER:
            continue
        signed = [
            (f, float((np.array(box.centre_xy) - line_y) @ direction))
            for f in range(camera.n_frames)
            for box in camera.vehicle_boxes(f)
            if box.vehicle_id == vid
        ]
        crossing = next(f for (_, s0), (f, s1) in itertools.pairwise(signed) if s0 <= 0 < s1)
        assert camera.light_state(crossing) == "amber"


@pytest.mark.parametrize("camera_id", STREETS)
def test_brief_stops_and_legal_parking_are_never_violations(camera_id: str) -> None:
    for seed in (0, 1):
        camera = minute(camera_id, seed)
        roles = {camera.roles[v.vehicle_id] for v in camera.truth}
        assert roles <= {Role.ZONE_VIOLATOR}
    lawful = {Role.BRIEF_STOP, Role.LEGAL_PARKER}
    assert lawful & set(minute(camera_id).roles.values()) | lawful & set(
        minute(camera_id, 1).roles.values()
    )


MIXED = {"two_wheeler_share": 0.45, "queue_pullouts_per_red": 1.0, "creepers_per_red": 1.0}


@cache
def mixed_minute(camera_id: str) -> SimulatedCamera:
    return simulate_camera(camera_id, seconds=60, traffic_update=MIXED)


@pytest.mark.parametrize("camera_id", INTERSECTIONS)
def test_mixed_traffic_keeps_vehicles_apart_and_offenders_scripted(camera_id: str) -> None:
    camera = mixed_minute(camera_id)
    kinds = {p.body.kind for frame in camera._trajectory.frames for p in frame}
    assert {VehicleKind.MOTORBIKE, VehicleKind.BICYCLE, VehicleKind.CAR} <= kinds
    for index in range(camera.n_frames):
        for p, q in itertools.combinations(camera.vehicle_boxes(index), 2):
            (px, py, pw, ph), (qx, qy, qw, qh) = p.bbox_xywh, q.bbox_xywh
            assert min(px + pw, qx + qw) - max(px, qx) <= 0 or (
                min(py + ph, qy + qh) - max(py, qy) <= 0
            ), (index, p, q)
    scripted = {Role.RUNNER, Role.QUEUE_PULLOUT, Role.CREEPER}
    roles = {camera.roles[v.vehicle_id] for v in camera.truth}
    assert roles <= scripted
    assert {Role.QUEUE_PULLOUT, Role.CREEPER} <= roles


@pytest.mark.parametrize("camera_id", INTERSECTIONS)
def test_creepers_stop_just_past_the_line_on_red(camera_id: str) -> None:
    """A creeper's crossing is a violation, and it then stands on red until green."""
    camera = mixed_minute(camera_id)
    creepers = [v for v in camera.truth if camera.roles[v.vehicle_id] is Role.CREEPER]
    assert creepers
    fps = round(camera.fps)
    for violation in creepers:
        later = violation.frame + 2 * fps
        if later >= camera.n_frames or camera.light_state(later) != "red":
            continue
        (box,) = [b for b in camera.vehicle_boxes(later) if b.vehicle_id == violation.vehicle_id]
        (again,) = [
            b for b in camera.vehicle_boxes(later + 1) if b.vehicle_id == violation.vehicle_id
        ]
        assert box == again, "a creeper stands still past the line while the light is red"


def test_traffic_without_two_wheelers_is_unchanged_by_the_new_keys() -> None:
    plain = simulate_camera("wuzhen-cam-01", seconds=20)
    zero = simulate_camera(
        "wuzhen-cam-01",
        seconds=20,
        traffic_update={"two_wheeler_share": 0, "queue_pullouts_per_red": 0, "creepers_per_red": 0},
    )
    assert plain.frame_truth == zero.frame_truth
