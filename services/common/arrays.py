"""The names of the image and point shapes that pass between stages, declared once.

All images are numpy arrays in OpenCV's layout (rows, columns[, channels]), 8 bits a value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: A point in pixel coordinates, origin at the top left: (x, y).
PointXY = tuple[float, float]
#: A colour frame, shape (height, width, 3), channels in OpenCV's blue-green-red order.
BGRImage = npt.NDArray[np.uint8]
#: One channel of brightness, shape (height, width).
GreyImage = npt.NDArray[np.uint8]
#: A binary mask, shape (height, width): 0 outside, 255 (or any non-zero) inside.
Mask = npt.NDArray[np.uint8]
