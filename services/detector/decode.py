"""Frames to small greyscale working images, as cheaply as the input allows.

JPEG frames are decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling, straight to
greyscale: the IDCT and colour conversion shrink with the output, which is most of the
cost of a full decode. BGR frames are area-averaged down, then converted.

A camera with a signal also needs the lamp head's colour. A decoded (BGR) frame has it at
full resolution already. For a JPEG frame the cheapest way measured (``bench/signal_colour.py``)
is to decode the same reduced scale in colour and convert that to the greyscale working image:
the entropy decoding, which dominates a reduced decode, is the same either way. A head too
small to survive that scale (real heads stop reading below about 8 px long) is decoded in
colour at a smaller reduction that keeps it that long, and the working image is resized
from that picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.common.arrays import BGRImage, GreyImage
from services.common.frames import Frame

_REDUCED_GREY = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
_REDUCED_COLOUR = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class CorruptFrameError(ValueError):
    """A frame that cannot be decoded, or whose size differs from the feed's."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def reduction_for(width: int, *, min_working_width: int) -> int:
    """The largest DCT reduction (1, 2, 4 or 8) that keeps at least ``min_working_width``.

    >>> reduction_for(1920, min_working_width=320), reduction_for(640, min_working_width=320)
    (4, 2)
    """
    return max(r for r in (1, 2, 4, 8) if width // r >= min_working_width or r == 1)


def colour_reduction_for(head_length_px: float, *, reduction: int, min_head_px: float) -> int:
    """The largest reduction up to ``reduction`` that leaves a lamp head ``head_length_px``
    long (in source pixels, along its lamps) at least ``min_head_px`` long.

    >>> colour_reduction_for(23, reduction=4, min_head_px=8)
    2
    >>> colour_reduction_for(34, reduction=4, min_head_px=8)
    4
    """
    return max(
        r for r in (1, 2, 4, 8) if r == 1 or (r <= reduction and head_length_px / r >= min_head_px)
    )


def source_size(frame: Frame) -> tuple[int, int]:
    """The frame's full ``(width, height)``; raises :class:`CorruptFrameError`."""
    if frame.bgr is not None:
        return (frame.bgr.shape[1], frame.bgr.shape[0])
    image = _imdecode(frame, cv2.IMREAD_GRAYSCALE)
    return (image.shape[1], image.shape[0])


@dataclass(frozen=True, slots=True)
class WorkingPicture:
    """The greyscale working image, and a colour picture of the same frame.

    ``colour_per_source_px`` is the colour picture's size over the source's: 1 for a decoded
    frame's own BGR image, 1/reduction for a JPEG decoded at reduced scale.
    """

    grey: GreyImage
    colour: BGRImage
    colour_per_source_px: float


@dataclass(frozen=True, slots=True)
class WorkingDecoder:
    """Decodes every frame of one feed to the same working size."""

    source_wh: tuple[int, int]
    reduction: int
    # The reduction a JPEG's colour picture is decoded at; a smaller one than ``reduction``
    # keeps a small lamp head a few pixels longer, and the working image is then resized
    # from it. None: the same as ``reduction``.
    colour_reduction: int | None = None

    @property
    def working_wh(self) -> tuple[int, int]:
        # libjpeg's scaled output rounds up, so the BGR path does the same.
        w, h = self.source_wh
        return (-(-w // self.reduction), -(-h // self.reduction))

    def decode(self, frame: Frame) -> GreyImage:
        """The greyscale working image; raises :class:`CorruptFrameError`."""
        if frame.bgr is not None:
            bgr = frame.bgr
            if (bgr.shape[1], bgr.shape[0]) != self.source_wh:
                raise CorruptFrameError("size", f"frame {frame.index}: size {bgr.shape}")
            small = (
                cv2.resize(bgr, self.working_wh, interpolation=cv2.INTER_AREA)
                if self.reduction > 1
                else bgr
            )
            return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        grey = _imdecode(frame, _REDUCED_GREY[self.reduction])
        if (grey.shape[1], grey.shape[0]) != self.working_wh:
            raise CorruptFrameError("size", f"frame {frame.index}: size {grey.shape[::-1]}")
        return grey

    def decode_with_colour(self, frame: Frame) -> WorkingPicture:
        """The working image and a colour picture; raises :class:`CorruptFrameError`."""
        if frame.bgr is not None:
            return WorkingPicture(grey=self.decode(frame), colour=frame.bgr, colour_per_source_px=1)
        reduction = self.colour_reduction or self.reduction
        colour = _imdecode(frame, _REDUCED_COLOUR[reduction])
        w, h = self.source_wh
        if (colour.shape[1], colour.shape[0]) != (-(-w // reduction), -(-h // reduction)):
            raise CorruptFrameError("size", f"frame {frame.index}: size {colour.shape[1::-1]}")
        working = (
            colour
            if reduction == self.reduction
            else cv2.resize(colour, self.working_wh, interpolation=cv2.INTER_AREA)
        )
        return WorkingPicture(
            grey=np.asarray(cv2.cvtColor(working, cv2.COLOR_BGR2GRAY)),
            colour=colour,
            colour_per_source_px=1 / reduction,
        )


def _imdecode(frame: Frame, flags: int) -> GreyImage:
    buffer = np.frombuffer(frame.jpeg or b"", np.uint8)
    image = cv2.imdecode(buffer, flags) if buffer.size else None
    if image is None:
        raise CorruptFrameError("decode", f"frame {frame.index}: not a decodable image")
    return np.asarray(image, dtype=np.uint8)


def decode_bgr(frame: Frame) -> BGRImage:
    """The full-resolution colour image (for evidence only; never on the hot path)."""
    if frame.bgr is not None:
        return frame.bgr
    buffer = np.frombuffer(frame.jpeg or b"", np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise CorruptFrameError("decode", f"frame {frame.index}: not a decodable image")
    return np.asarray(image, dtype=np.uint8)
