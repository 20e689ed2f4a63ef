"""Foreground mask to candidate vehicle boxes."""

from __future__ import annotations

import cv2

from services.common.arrays import Mask
from services.common.boxes import BoxXYWH


def find_blobs(mask: Mask, *, min_area_px: int) -> list[BoxXYWH]:
    """Bounding boxes (``x, y, w, h``) of the mask's connected regions of ``min_area_px`` or more.

    >>> import numpy as np
    >>> m = np.zeros((20, 20), np.uint8); m[2:8, 3:13] = 255
    >>> find_blobs(m, min_area_px=10)
    [(3.0, 2.0, 10.0, 6.0)]
    """
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0:
        return []
    # Only the rectangle that holds foreground is labelled (labelling costs per pixel, and
    # vehicles cover a few per cent of the frame). Its corner is taken down to even
    # coordinates so that BBDT's 2x2 blocks, and so the order of the labels, are those of
    # the whole mask.
    x0, y0 = x & ~1, y & ~1
    # BBDT measured about 2.5x faster than OpenCV's default labelling on our masks.
    count, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask[y0 : y + h, x0 : x + w], 8, cv2.CV_32S, cv2.CCL_BBDT
    )
    # Specks below the area floor are dropped in one array operation, and the rest read as
    # Python ints in one call rather than five int() conversions a label.
    kept = stats[1:count][stats[1:count, cv2.CC_STAT_AREA] >= min_area_px]
    return [
        (float(bx + x0), float(by + y0), float(bw), float(bh))
        for bx, by, bw, bh, _ in kept.tolist()
    ]
