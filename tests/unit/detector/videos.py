"""Small test videos made at test time: the synthetic street through OpenCV and ffmpeg.

ffmpeg (a system tool the project needs, like Kafka) writes what OpenCV cannot: H.264 in
MP4, MOV and MKV, variable frame rates, and edit lists.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from tests.unit.detector.synth import FPS, HEIGHT, WIDTH, Vehicle, cycle, render, straight

FRAMES = 120
# The synthetic runner crosses the stop line at this frame (see test_replay).
CROSSING_FRAME = 56


@functools.cache
def _runner_clip() -> tuple[np.ndarray, ...]:
    car = Vehicle(path=straight(start_xy=(300, 370), velocity_xy=(0, -8), first=30))
    light = cycle(red=(40, 200))
    return tuple(render(index, [car], light) for index in range(FRAMES))


def runner_images(count: int = FRAMES) -> Iterator[np.ndarray]:
    """A car that runs the red at frame 56 of a 12 s clip at 10 fps (rendered once)."""
    yield from _runner_clip()[:count]


def write_mjpg(path: Path, *, corrupt_frames: tuple[int, ...] = (), count: int = FRAMES) -> Path:
    """The runner clip as MJPG AVI; the JPEG headers of ``corrupt_frames`` are wiped."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    for image in runner_images(count):
        writer.write(image)
    writer.release()
    if corrupt_frames:
        data = bytearray(path.read_bytes())
        starts, at = [], -1
        while (at := data.find(b"\xff\xd8\xff", at + 1)) >= 0:
            starts.append(at)
        for index in corrupt_frames:
            data[starts[index] : starts[index] + 64] = bytes(64)  # no JPEG header: undecodable
        path.write_bytes(bytes(data))
    return path


def ffmpeg(*args: str, images: Iterator[np.ndarray] | None = None) -> None:
    """Run ffmpeg; ``images`` (BGR, WIDTH x HEIGHT at FPS) are piped in as its input."""
    binary = shutil.which("ffmpeg")
    assert binary is not None, "ffmpeg is needed to make the test videos (apt install ffmpeg)"
    command = [binary, "-v", "error", "-y"]
    if images is not None:
        command += ["-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}"]
        command += ["-r", str(FPS), "-i", "-"]
    stdin = b"".join(image.tobytes() for image in images) if images is not None else None
    subprocess.run([*command, *args], input=stdin, check=True)


def write_h264(path: Path, *extra: str, count: int = FRAMES) -> Path:
    """The runner clip as H.264 in the container that ``path``'s suffix names."""
    ffmpeg(*extra, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
           "-g", "25", str(path), images=runner_images(count))  # fmt: skip
    return path


def write_vfr_mkv(path: Path) -> list[int]:
    """The runner clip as MKV with a variable frame rate: 100 ms apart, then 50 ms from
    frame 60 on. Returns each frame's presentation time in ms."""
    pts_ms = [i * 100 if i < 60 else 6000 + (i - 60) * 50 for i in range(FRAMES)]
    setpts = "setpts='if(lt(N\\,60)\\,N*100\\,6000+(N-60)*50)'"
    write_h264(path, "-vf", f"settb=1/1000,{setpts}", "-fps_mode", "passthrough",
               "-enc_time_base", "1/1000")  # fmt: skip
    return pts_ms


def write_edit_listed_mov(path: Path, whole: Path) -> None:
    """``whole`` cut by stream copy from 2.1 s: the MOV lists the frames from the keyframe
    before the cut, and an edit list hides the ones before it, as phones trim clips."""
    ffmpeg("-ss", "2.1", "-i", str(whole), "-c", "copy", str(path))


def truncate(path: Path, *, keep: float) -> Path:
    """Cut ``path`` to its first ``keep`` share of bytes, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
