"""How long a video file says it is: finds files cut short in a copy or a crash.

A decoder reads a truncated file up to where its data stops and then sees the end of the
stream, exactly as at a clean end. The container's own size fields tell the two apart: an
AVI's RIFF header, an MP4/MOV's top-level boxes and a Matroska segment each declare how many
bytes follow them. Only headers are read, never the media data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# A Matroska size field of all ones: "unknown", written by live recorders that never seek back.
_EBML_UNKNOWN_SIZES = {(1 << (7 * n)) - 1 for n in range(1, 9)}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_SEGMENT = b"\x18\x53\x80\x67"


@dataclass(frozen=True, slots=True)
class Truncation:
    """A file that ends before the length its container declares."""

    size_bytes: int
    declared_bytes: int

    def describe(self, path: Path) -> str:
        """One line for a person.

        >>> Truncation(size_bytes=600, declared_bytes=1000).describe(Path("a.avi"))
        'a.avi is truncated: it ends at byte 600 of the 1000 its header declares (60%)'
        """
        share = self.size_bytes / self.declared_bytes
        return (
            f"{path} is truncated: it ends at byte {self.size_bytes} of the "
            f"{self.declared_bytes} its header declares ({share:.0%})"
        )


def find_truncation(path: Path) -> Truncation | None:
    """The truncation of the AVI, MP4/MOV or Matroska file at ``path``, if it is cut short;
    ``None`` for a whole file, or one whose format or header does not say its length."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        handle.seek(0)
        declared: int | None
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            declared = 8 + int.from_bytes(head[4:8], "little")
        elif head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
            declared = _iso_boxes_end(handle, size)
        elif head[:4] == _EBML_MAGIC:
            declared = _matroska_end(handle)
        else:
            declared = None
    if declared is None or declared <= size:
        return None
    return Truncation(size_bytes=size, declared_bytes=declared)


def _iso_boxes_end(handle: BinaryIO, size: int) -> int | None:
    """Where the last top-level box of an ISO media file (MP4, MOV) says it ends."""
    offset = 0
    while offset < size:
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            return offset + 8  # a box header cut in two
        box_size = int.from_bytes(header[:4], "big")
        if box_size == 1:
            if len(header) < 16:
                return offset + 16
            box_size = int.from_bytes(header[8:16], "big")
        elif box_size == 0:  # "to the end of the file": says nothing of its length
            return None
        if box_size < 8:
            return None  # not a box: leave the verdict to the decoder
        offset += box_size
    return offset


def _matroska_end(handle: BinaryIO) -> int | None:
    """Where a Matroska (MKV, WebM) file's first segment says it ends."""
    data = handle.read(4096)
    header_size, at = _ebml_vint(data, 4)
    if header_size is None:
        return None
    at += header_size
    if data[at : at + 4] != _EBML_SEGMENT:
        return None
    segment_size, body = _ebml_vint(data, at + 4)
    if segment_size is None or segment_size in _EBML_UNKNOWN_SIZES:
        return None
    return body + segment_size


def _ebml_vint(data: bytes, at: int) -> tuple[int | None, int]:
    """An EBML variable-length size at ``data[at]`` and the offset just past it.

    >>> _ebml_vint(bytes([0x81]), 0), _ebml_vint(bytes([0x40, 0x02]), 0)
    ((1, 1), (2, 2))
    """
    if at >= len(data) or data[at] == 0:
        return None, at
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None, at
    value = data[at] & (0xFF >> length)
    for byte in data[at + 1 : at + length]:
        value = (value << 8) | byte
    return value, at + length
