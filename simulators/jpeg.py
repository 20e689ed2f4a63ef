"""JPEG encoding of frames that differ from a fixed background only in a few places.

A simulated camera's frame is its background plus vehicles and a lit lamp, which cover a
small part of the picture. ``cv2.imencode`` spends its time on the whole frame regardless.
:class:`BackgroundJpegEncoder` encodes the background once with a restart marker after every
*tile* (a run of MCUs within one MCU row); a restart resets the entropy coder, so each tile's
bytes depend on that tile's pixels alone. A frame then costs one ``cv2.imencode`` per box of
tiles that changed (nearby boxes merged) and a splice: the background's bytes for clean
tiles, the boxes' bytes for the rest, with the restart markers renumbered to their place.

The result is byte for byte what ``cv2.imencode`` gives for the whole frame with the same
quality and restart interval, so it decodes to exactly the picture plain ``cv2.imencode``
would give; the markers cost about 1.5% more bytes.

>>> background = np.full((720, 1280, 3), 90, np.uint8)
>>> encoder = BackgroundJpegEncoder(background, quality=85)
>>> frame = background.copy()
>>> frame[300:360, 500:620] = (30, 30, 200)
>>> data = encoder.encode(frame, damage_xyxy=[(500, 300, 620, 360)])
>>> data == encode_whole(frame, quality=85, restart_mcus=encoder.tile_mcus)
True
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from services.common.frames import BGRImage

__all__ = ["BackgroundJpegEncoder", "JpegLayout", "encode_whole", "parse_jpeg"]

# Pixel rectangle (x0, y0, x1, y1), end-exclusive.
RectXYXY = tuple[int, int, int, int]

_SOI, _EOI, _SOS, _DQT, _DHT, _SOF0, _DRI = 0xD8, 0xD9, 0xDA, 0xDB, 0xC4, 0xC0, 0xDD
_RST = [bytes((0xFF, 0xD0 + n)) for n in range(8)]
_RST_MARKER = re.compile(rb"\xff[\xd0-\xd7]")
# A tile of up to 8 MCUs (128 px at 4:2:0) keeps the markers near 1.5% of a 720p frame. Tiles
# of 4 or 2 MCUs re-encode less road around each vehicle but cost 3% to 5% more bytes on the
# frames topic, for a CPU saving within the measurement's noise (bench/simulate.py).
MAX_TILE_MCUS = 8


def encode_whole(img: BGRImage, *, quality: int, restart_mcus: int = 0) -> bytes:
    """Plain ``cv2.imencode`` of ``img``; ``restart_mcus`` > 0 adds restart markers."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_RST_INTERVAL, restart_mcus]
    ok, buffer = cv2.imencode(".jpg", img, params)
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()


@dataclass(frozen=True, slots=True)
class JpegLayout:
    """A baseline JPEG split into what the splice needs."""

    header: bytes  # SOI up to and including the SOS segment
    width: int
    height: int
    mcu_wh: tuple[int, int]
    segments: list[bytes]  # entropy-coded data between restart markers

    @property
    def mcu_cols(self) -> int:
        return -(-self.width // self.mcu_wh[0])

    @property
    def mcu_rows(self) -> int:
        return -(-self.height // self.mcu_wh[1])


def parse_jpeg(data: bytes) -> JpegLayout:
    """Split a baseline JPEG (one interleaved scan, as libjpeg writes) into its parts.

    Raises ``ValueError`` for anything else (progressive, several scans, truncated).
    """
    if data[:2] != b"\xff\xd8" or data[-2:] != b"\xff\xd9":
        raise ValueError("not a complete JPEG")
    pos = 2
    width = height = 0
    mcu_wh: tuple[int, int] | None = None
    while True:
        if data[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 2 + length]
        if marker == _SOF0:
            height, width = int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big")
            factors = [body[6 + 3 * c + 1] for c in range(body[5])]
            mcu_wh = (8 * max(f >> 4 for f in factors), 8 * max(f & 15 for f in factors))
        elif 0xC1 <= marker <= 0xCF and marker not in (_DHT, 0xC8, 0xCC):
            raise ValueError(f"only baseline JPEG is supported (SOF marker {marker:#x})")
        pos += 2 + length
        if marker == _SOS:
            break
    if mcu_wh is None:
        raise ValueError("no SOF0 segment")
    # In entropy-coded data a 0xFF byte is always followed by 0x00 (byte stuffing), so
    # 0xFF 0xD0-0xD7 can only be a restart marker.
    segments = _RST_MARKER.split(data[pos:-2])
    return JpegLayout(
        header=data[:pos],
        width=width,
        height=height,
        mcu_wh=mcu_wh,
        segments=segments,
    )


# One more cv2.imencode call (and its splice) costs about as much as encoding this many more
# 128 x 16 tiles, so two boxes are encoded as one whenever their bounding box wastes fewer.
CALL_COST_TILES = 9

TileBox = tuple[int, int, int, int]  # (row0, row1, col0, col1) of tiles, end-exclusive


def _area(box: TileBox) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


def _union(a: TileBox, b: TileBox) -> TileBox:
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def _overlap(a: TileBox, b: TileBox) -> int:
    rows = min(a[1], b[1]) - max(a[0], b[0])
    cols = min(a[3], b[3]) - max(a[2], b[2])
    return rows * cols if rows > 0 and cols > 0 else 0


def merge_boxes(
    boxes: Iterable[TileBox], *, call_cost_tiles: int = CALL_COST_TILES
) -> list[TileBox]:
    """Disjoint boxes covering ``boxes``: overlapping ones merge (the splice needs each tile
    from one encode), and so do ones whose bounding box costs less than another encode.

    >>> merge_boxes([(0, 2, 0, 2), (1, 3, 1, 3), (10, 11, 0, 1)])
    [(0, 3, 0, 3), (10, 11, 0, 1)]
    """
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        for i, j in itertools.combinations(range(len(merged)), 2):
            a, b = merged[i], merged[j]
            union = _union(a, b)
            waste = _area(union) - (_area(a) + _area(b) - _overlap(a, b))
            if _overlap(a, b) or waste < call_cost_tiles:
                merged[i] = union
                del merged[j]
                changed = True
                break
    return merged


def _table_runs(header: bytes) -> list[bytes]:
    """The header's runs of consecutive DQT/DHT segments, each as one byte string."""
    runs, current, pos = [], bytearray(), 2
    while pos < len(header):
        marker, length = header[pos + 1], int.from_bytes(header[pos + 2 : pos + 4], "big")
        if marker in (_DQT, _DHT):
            current += header[pos : pos + 2 + length]
        elif current:
            runs.append(bytes(current))
            current = bytearray()
        pos += 2 + length
    if current:
        runs.append(bytes(current))
    return runs


def _tile_mcus(mcu_cols: int) -> int:
    """The largest tile (in MCUs) that divides a row, so that restarts fall on row starts."""
    return max(n for n in range(1, MAX_TILE_MCUS + 1) if mcu_cols % n == 0)


class BackgroundJpegEncoder:
    """Encodes frames of one background, given where each frame differs from it.

    ``encode(frame, damage_xyxy)`` promises: if every pixel of ``frame`` outside the
    ``damage_xyxy`` rectangles equals the background, the result is exactly
    ``encode_whole(frame, quality=quality, restart_mcus=self.tile_mcus)``.
    """

    def __init__(self, background: BGRImage, *, quality: int) -> None:
        if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.uint8:
            raise ValueError("background must be an H x W x 3 uint8 image")
        self.quality = quality
        self.height, self.width = background.shape[:2]
        probe = parse_jpeg(encode_whole(background, quality=quality))
        self.mcu_w, self.mcu_h = probe.mcu_wh
        self.tile_mcus = _tile_mcus(probe.mcu_cols)
        self.tile_w = self.mcu_w * self.tile_mcus
        self.tile_cols = probe.mcu_cols // self.tile_mcus
        self.tile_rows = probe.mcu_rows
        layout = parse_jpeg(encode_whole(background, quality=quality, restart_mcus=self.tile_mcus))
        n_tiles = self.tile_rows * self.tile_cols
        if len(layout.segments) != n_tiles:
            raise ValueError(f"expected {n_tiles} restart intervals, found {len(layout.segments)}")
        self._header = layout.header
        # Tiles are exchangeable only while every encode uses these quantisation and Huffman
        # tables (libjpeg's standard ones at this quality); _segments checks each encode.
        self._tables = _table_runs(layout.header)
        # Tile i's bytes followed by the marker that follows it in any frame: its number
        # depends on the tile's position only. The last tile is followed by EOI instead.
        chunks = [seg + _RST[i % 8] for i, seg in enumerate(layout.segments[:-1])]
        chunks.append(layout.segments[-1])
        self._offsets = np.cumsum([0, *map(len, chunks)]).tolist()
        self._scan = b"".join(chunks)

    def _segments(self, data: bytes) -> list[bytes]:
        """The entropy-coded segments of a JPEG this encoder wrote with its tables."""
        sos = data.index(b"\xff\xda")
        head = data[:sos]
        if not all(run in head for run in self._tables):
            raise RuntimeError("the JPEG encoder changed its tables between calls")
        scan_start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
        return _RST_MARKER.split(data[scan_start:-2])

    def background_jpeg(self) -> bytes:
        """The background alone, as ``encode`` gives it for a frame with no damage."""
        return self._header + self._scan + b"\xff\xd9"

    def _tile_boxes(self, damage_xyxy: Iterable[RectXYXY]) -> list[TileBox]:
        """The tiles each damage rectangle touches, as boxes clipped to the frame."""
        boxes = []
        for x0, y0, x1, y1 in damage_xyxy:
            left, top = max(x0, 0), max(y0, 0)
            right, bottom = min(x1, self.width), min(y1, self.height)
            if right > left and bottom > top:
                boxes.append(
                    (
                        top // self.mcu_h,
                        (bottom - 1) // self.mcu_h + 1,
                        left // self.tile_w,
                        (right - 1) // self.tile_w + 1,
                    )
                )
        return boxes

    def encode(self, frame: BGRImage, damage_xyxy: Sequence[RectXYXY]) -> bytes:
        """``frame`` as JPEG, re-encoding only the tiles that ``damage_xyxy`` touches."""
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame is {frame.shape}, the background {self.height, self.width}")
        runs: list[tuple[int, int, list[bytes], int]] = []
        for r0, r1, c0, c1 in merge_boxes(self._tile_boxes(damage_xyxy)):
            band = frame[
                r0 * self.mcu_h : min(r1 * self.mcu_h, self.height),
                c0 * self.tile_w : min(c1 * self.tile_w, self.width),
            ]
            segments = self._segments(
                encode_whole(band, quality=self.quality, restart_mcus=self.tile_mcus)
            )
            width = c1 - c0
            runs.extend(
                (row * self.tile_cols + c0, width, segments, (row - r0) * width)
                for row in range(r0, r1)
            )
        pieces = [self._header]
        offsets, scan, last = self._offsets, self._scan, len(self._offsets) - 2
        done = 0  # tiles emitted so far
        for first, width, segments, start in sorted(runs, key=lambda run: run[0]):
            pieces.append(scan[offsets[done] : offsets[first]])
            for k in range(width):
                pieces.append(segments[start + k])
                if first + k < last:
                    pieces.append(_RST[(first + k) % 8])
            done = first + width
        pieces.append(scan[offsets[done] :])
        pieces.append(b"\xff\xd9")
        return b"".join(pieces)
