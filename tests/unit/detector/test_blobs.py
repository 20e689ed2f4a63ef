"""find_blobs labels only the mask's bounding rectangle; the boxes, and their order, must be
those of labelling the whole mask."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from services.detector.blobs import find_blobs

U8 = npt.NDArray[np.uint8]


def whole_mask_boxes(mask: U8, min_area_px: int) -> list[tuple[float, float, float, float]]:
    count, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask, 8, cv2.CV_32S, cv2.CCL_BBDT
    )
    return [
        (float(x), float(y), float(w), float(h))
        for x, y, w, h, area in (stats[label] for label in range(1, count))
        if area >= min_area_px
    ]


def random_mask(seed: int) -> U8:
    rng = np.random.default_rng(seed)
    mask = np.zeros((97, 131), np.uint8)
    for _ in range(int(rng.integers(0, 10))):
        x, y = int(rng.integers(0, 125)), int(rng.integers(0, 91))
        w, h = int(rng.integers(1, 30)), int(rng.integers(1, 30))
        mask[y : y + h, x : x + w] = 255
    mask[rng.random(mask.shape) > 0.997] = 255
    return mask


@pytest.mark.parametrize("seed", range(40))
def test_same_boxes_in_the_same_order_as_whole_mask_labelling(seed: int) -> None:
    mask = random_mask(seed)
    assert find_blobs(mask, min_area_px=3) == whole_mask_boxes(mask, 3)


def test_empty_mask_and_nested_region() -> None:
    mask = np.zeros((40, 40), np.uint8)
    assert find_blobs(mask, min_area_px=1) == []
    cv2.rectangle(mask, (5, 7), (30, 33), 255, 1)  # a ring at odd coordinates ...
    mask[17:21, 15:19] = 255  # ... with a region in its hole
    assert find_blobs(mask, min_area_px=1) == [(5.0, 7.0, 26.0, 27.0), (15.0, 17.0, 4.0, 4.0)]
