"""The spliced JPEG encoder: the same bytes as a whole-frame encode, hence the same picture."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from simulators.feed import simulate_camera
from simulators.jpeg import BackgroundJpegEncoder, encode_whole, merge_boxes, parse_jpeg

QUALITY = 85


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a valid JPEG"
    return np.asarray(img)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def _textured(height: int, width: int, seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    return np.asarray(cv2.resize(coarse.astype(np.uint8), (width, height)))


@pytest.mark.parametrize(
    "height_width", [(720, 1280), (360, 640), (180, 320), (1080, 1920), (101, 203), (16, 16)]
)
def test_a_spliced_frame_is_byte_for_byte_the_whole_frame_encode(
    height_width: tuple[int, int],
) -> None:
    height, width = height_width
    background = _textured(height, width, seed=width)
    encoder = BackgroundJpegEncoder(background, quality=QUALITY)
    rng = np.random.default_rng(height)
    for _ in range(12):
        frame, damage = background.copy(), []
        for _ in range(int(rng.integers(0, 6))):
            x0, y0 = int(rng.integers(-20, width)), int(rng.integers(-20, height))
            x1, y1 = x0 + int(rng.integers(1, 300)), y0 + int(rng.integers(1, 300))
            frame[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = rng.integers(0, 256, 3)
            damage.append((x0, y0, x1, y1))
        spliced = encoder.encode(frame, damage)
        assert spliced == encode_whole(frame, quality=QUALITY, restart_mcus=encoder.tile_mcus)


def test_it_decodes_to_exactly_the_picture_plain_imencode_gives() -> None:
    camera = simulate_camera("hangzhou-cam-03", seconds=20)
    for index in (0, 57, 120, 199):
        spliced = camera.jpeg_frame(index, QUALITY)
        assert spliced.jpeg is not None
        picture = camera.render(index)
        plain = encode_whole(picture, quality=QUALITY)
        assert np.array_equal(_decode(spliced.jpeg), _decode(plain))
        # So the error against the drawn picture is exactly the quality setting's.
        assert _psnr(_decode(spliced.jpeg), picture) == _psnr(_decode(plain), picture) > 30
        # Restart markers cost little: under 3% more bytes.
        assert len(spliced.jpeg) < 1.03 * len(plain)


@pytest.mark.parametrize(("camera_id", "variant"), list(itertools.product(
    ("wuzhen-cam-01", "wuzhen-cam-02", "hangzhou-cam-01", "hangzhou-cam-04"),
    ("day", "dusk", "night"),
)))  # fmt: skip
def test_the_renderer_draws_nothing_outside_its_damage(camera_id: str, variant: str) -> None:
    camera = simulate_camera(camera_id, seconds=40, variant=variant, resolution_wh=(640, 360))
    renderer, trajectory = camera._renderer, camera._trajectory
    for index in range(0, camera.n_frames, 9):
        phase = trajectory.phases[index] if trajectory.phases else None
        picture = renderer.render(index, trajectory.frames[index], phase)
        damage = renderer.damage_xyxy(trajectory.frames[index], phase)
        assert damage is not None
        outside = np.ones(picture.shape[:2], bool)
        for x0, y0, x1, y1 in damage:
            outside[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
        changed = np.any(picture != renderer.background, axis=2)
        assert not (changed & outside).any(), (index, np.argwhere(changed & outside)[:3])


@pytest.mark.parametrize("variant", ["rain", "drift", "shake", "jpeg"])
def test_variants_that_change_every_pixel_have_no_damage_and_encode_whole(variant: str) -> None:
    camera = simulate_camera("wuzhen-cam-01", seconds=2, variant=variant, resolution_wh=(320, 180))
    trajectory = camera._trajectory
    assert camera._renderer.damage_xyxy(trajectory.frames[3], None) is None
    frame = camera.jpeg_frame(3)
    assert frame.jpeg is not None
    assert _decode(frame.jpeg).shape == (180, 320, 3)


def test_reusing_the_scratch_image_gives_every_frame_as_render_does() -> None:
    camera = simulate_camera("wuzhen-cam-02", seconds=30, resolution_wh=(640, 360))
    renderer, trajectory = camera._renderer, camera._trajectory
    for index in [*range(0, 60, 3), 250, 5, 299, 0]:  # forwards, and jumps both ways
        reused, _ = renderer.render_reused(index, trajectory.frames[index], None)
        assert np.array_equal(reused, renderer.render(index, trajectory.frames[index], None))


def test_no_damage_gives_the_background_and_damage_off_the_frame_is_ignored() -> None:
    background = _textured(360, 640, seed=3)
    encoder = BackgroundJpegEncoder(background, quality=QUALITY)
    assert encoder.encode(background, []) == encoder.background_jpeg()
    assert encoder.encode(background, [(-50, -50, -1, -1), (700, 0, 900, 10)]) == (
        encoder.background_jpeg()
    )


def test_bad_inputs_are_refused() -> None:
    encoder = BackgroundJpegEncoder(_textured(64, 64, seed=1), quality=QUALITY)
    with pytest.raises(ValueError, match="frame is"):
        encoder.encode(np.zeros((32, 64, 3), np.uint8), [])
    with pytest.raises(ValueError, match="H x W x 3"):
        BackgroundJpegEncoder(np.zeros((64, 64), np.uint8), quality=QUALITY)
    ok, progressive = cv2.imencode(
        ".jpg", _textured(64, 64, seed=2), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )
    assert ok
    with pytest.raises(ValueError, match="baseline"):
        parse_jpeg(progressive.tobytes())
    with pytest.raises(ValueError, match="complete"):
        parse_jpeg(b"\xff\xd8 truncated")


@pytest.mark.parametrize("seed", range(20))
def test_merged_boxes_are_disjoint_and_cover_every_tile(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(int(rng.integers(1, 12))):
        r0, c0 = int(rng.integers(0, 40)), int(rng.integers(0, 10))
        boxes.append((r0, r0 + int(rng.integers(1, 6)), c0, c0 + int(rng.integers(1, 3))))
    merged = merge_boxes(boxes)
    covered = np.zeros((50, 20), int)
    for r0, r1, c0, c1 in merged:
        covered[r0:r1, c0:c1] += 1
    assert covered.max() == 1
    for r0, r1, c0, c1 in boxes:
        assert (covered[r0:r1, c0:c1] == 1).all()
