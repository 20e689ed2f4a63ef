"""Frames to small greyscale working images, as cheaply as the input allows.

JPEG frames are decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling, straight to
greyscale: the IDCT and colour conversion shrink with the output, which is most of the
cost of a full decode. BGR frames are area-averaged down, then converted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from services.common.arrays import GreyImage
from services.common.frames import Frame

_REDUCED_GREY = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
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


def source_size(frame: Frame) -> tuple[int, int]:
    """The frame's full ``(width, height)``; raises :class:`CorruptFrameError`."""
    if frame.bgr is not None:
        return (frame.bgr.shape[1], frame.bgr.shape[0])
    image = _imdecode(frame, cv2.IMREAD_GRAYSCALE)
    return (image.shape[1], image.shape[0])


@dataclass(frozen=True, slots=True)
class WorkingDecoder:
    """Decodes every frame of one feed to the same working size."""

    source_wh: tuple[int, int]
    reduction: int

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


def _imdecode(frame: Frame, flags: int) -> GreyImage:
    buffer = np.frombuffer(frame.jpeg or b"", np.uint8)
    image = cv2.imdecode(buffer, flags) if buffer.size else None
    if image is None:
        raise CorruptFrameError("decode", f"frame {frame.index}: not a decodable image")
    return np.asarray(image, dtype=np.uint8)


def decode_bgr(frame: Frame) -> npt.NDArray[np.uint8]:
    """The full-resolution colour image (for evidence only; never on the hot path)."""
    if frame.bgr is not None:
        return frame.bgr
    buffer = np.frombuffer(frame.jpeg or b"", np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise CorruptFrameError("decode", f"frame {frame.index}: not a decodable image")
    return np.asarray(image, dtype=np.uint8)
