"""Foreground from a background model that does not learn where vehicles stand.

A plain running average (or MOG2) absorbs a stopped car within seconds, so a car waiting
at a red light or parked in a zone would vanish. Here the background learns at three rates:

* pixels that look like background learn quickly, which follows illumination drift;
* foreground pixels that no established track claims are absorbed slowly, so a "ghost"
  (a car that was in the very first frame and then drove off) fades within ``absorb_s``;
* pixels under established tracks are frozen, so a stopped vehicle stays foreground for as
  long as it stands, and the road it hides keeps its pre-arrival look: no ghost when it leaves.

The comparison is against the 3x3 minimum and maximum of the background, so a sub-pixel
camera shake does not light up every edge, and a global brightness offset (the median
difference over the frame) is removed first, so a drifting exposure does not either.

A shaking camera's running average blurs thin painted lines beyond what that range allows:
the sharp line a frame shows rises above the blurred one. While the frame's paint is
sharper than the model's over much of the scene, foreground on paint must also hold the
other way round (the background's value outside the frame's own 3x3 range), which a
shaken line does not and a vehicle does.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from services.common.arrays import GreyImage, Mask

# Frame and model are compared in 64ths of a grey level, as int16 (255 x 64, and twice
# that, fit): OpenCV's filters and arithmetic take twice the pixels per instruction as in
# float32, and the comparison ran about 1.5 times as fast. The model's level is rounded to
# the nearest 64th. In 16ths the scenarios were not all decided as in float32 (rounded
# down, two false stays under exposure drift; rounded to nearest, a stay missed under
# shake); in 64ths they are.
SUBLEVELS = 64
_TOP_LEVEL = 255 * SUBLEVELS
Levels = npt.NDArray[np.int16]

_KERNEL_3 = np.ones((3, 3), np.uint8)
_KERNEL_7 = np.ones((7, 7), np.uint8)
# A brighter pixel is lit road, not an object, unless its neighbourhood shows this many
# thresholds more edge strength than the background's.
GLOW_EDGE_FACTOR = 4.0
# Background whose 3x3 range spans this many thresholds is painted structure (a lane line, a
# kerb, the zebra), where a shaken camera's blurred model needs a second look.
PAINT_EDGE_FACTOR = 4.0
# The camera shakes while more than this share of the painted structure shows edges sharper
# than the background's by SHARPER_FACTOR thresholds (see SelectiveBackground._shaken).
SHAKEN_SHARE = 0.2
SHARPER_FACTOR = 2.0
# The road around a blob is the ring this wide outside its outline.
OUTLINE_RING_PX = 2
# A blob is a ghost when at least this share of its pixels show the road's levels in the
# frame and other levels in the background (and twice as many as the other way round).
GHOST_LEVEL_SHARE = 0.3


class SelectiveBackground:
    """Background model and foreground mask over greyscale working-scale frames.

    Rates are given as time constants in seconds so they mean the same at any frame rate.
    ``min_threshold`` is in grey levels; the live threshold is raised with the measured noise.
    """

    def __init__(
        self,
        *,
        fps: float,
        learn_s: float = 3.0,
        absorb_s: float = 12.0,
        warmup_s: float = 1.0,
        min_threshold: float = 3.0,
        noise_factor: float = 3.0,
    ) -> None:
        self._alpha_learn = min(1.0, 1.0 / (fps * learn_s))
        self._alpha_absorb = min(1.0, 1.0 / (fps * absorb_s))
        self._warmup_frames = max(1, round(fps * warmup_s))
        self._min_threshold = min_threshold
        self._noise_factor = noise_factor
        self._background: npt.NDArray[np.float32] | None = None
        self._frames_seen = 0
        self.threshold = min_threshold
        self._gain = 1.0
        self._scratch: _Scratch | None = None
        self._alpha_shake = min(1.0, 1.0 / fps)
        self._sharper_paint: float | None = None

    def apply(
        self, grey: GreyImage, *, frozen: Mask | None = None, whole: Mask | None = None
    ) -> Mask:
        """Foreground mask (0/255) for ``grey``, then learn from it.

        ``frozen`` (0/255, same shape) marks where established tracks stand; the background
        never learns there. ``whole`` (0/255) marks where the mask is never cut down to
        what a camera shake cannot explain (see ``_drop_shaken_paint``): where vehicles
        stand on painted hatching, which would cut them up.
        """
        self._frames_seen += 1
        if self._background is None:
            self._background = grey.astype(np.float32)
            return np.zeros_like(grey)
        background = self._background
        if self._frames_seen <= self._warmup_frames:
            # Settle on the empty road quickly; whatever moves now is forgotten just as fast.
            cv2.accumulateWeighted(grey, background, 0.3)
            return np.zeros_like(grey)
        scratch = self._scratch_for(grey)
        mask, lit = self._foreground(grey, scratch, background, whole)
        # A vehicle's interior can match the road and escape the mask; the pixels near the
        # mask are treated as foreground when learning, so a faint vehicle is not learnt
        # from the inside out. Nor is a light one whose smooth body passed for lit road.
        near = cv2.bitwise_or(cv2.dilate(mask, _KERNEL_7), lit)
        blocked = near if frozen is None else cv2.bitwise_or(near, frozen)
        if self._gain > 1.0:
            # A saturated pixel says nothing about its level at the model's exposure.
            _, saturated = cv2.threshold(grey, 253, 255, cv2.THRESH_BINARY)
            blocked = cv2.bitwise_or(blocked, saturated)
        # The model is kept at its own exposure: what it learns is the frame with the global
        # gain taken out, so a frozen patch stays right while the exposure drifts.
        normalised = np.multiply(grey, 1.0 / self._gain, out=scratch.normalised, dtype=np.float32)
        cv2.accumulateWeighted(normalised, background, self._alpha_learn, cv2.bitwise_not(blocked))
        # 0/255 masks: saturating subtraction is "near and not frozen".
        absorb = near if frozen is None else cv2.subtract(near, frozen)
        cv2.accumulateWeighted(normalised, background, self._alpha_absorb, absorb)
        return mask

    def is_ghost(self, grey: GreyImage, mask: Mask, box_xywh: tuple[int, int, int, int]) -> bool:
        """Whether the foreground in the box is a ghost: the outline of something the
        background holds but the frame no longer shows.

        A real vehicle's mask is bounded by the vehicle's own edges, which the frame shows
        and the (road) background does not; a ghost's mask is bounded by edges that only the
        background has. Comparing edge strength along the mask's boundary tells them apart,
        even over painted road, whose edges both images share. At night a dark vehicle's
        edges are faint, and the paint it hid shows as sharp as they are; then the levels
        tell (see ``_road_carries_on``).
        """
        if self._background is None:
            return False
        x, y, w, h = box_xywh
        region = mask[y : y + h, x : x + w]
        if region.size == 0:
            return False
        # Only the convex outline counts: holes and notches in a vehicle standing on
        # hatching are where the paint hides it, and their edges are the background's.
        points = cv2.findNonZero(region)
        if points is None:
            return False
        solid_region = np.zeros_like(region)
        hull = cv2.convexHull(points)
        cv2.fillConvexPoly(solid_region, hull, 255)
        boundary = cv2.subtract(solid_region, cv2.erode(solid_region, _KERNEL_3)) > 0
        if int(boundary.sum()) < 8:
            return False
        frame_edges = cv2.morphologyEx(grey[y : y + h, x : x + w], cv2.MORPH_GRADIENT, _KERNEL_3)
        background_edges = cv2.morphologyEx(
            self._background[y : y + h, x : x + w] * self._gain, cv2.MORPH_GRADIENT, _KERNEL_3
        )
        frame_strength = frame_edges[boundary].astype(np.float32)
        background_strength = background_edges[boundary].astype(np.float32)
        # Each boundary pixel votes: an edge only the background has is a ghost's, an edge
        # only the frame has is a vehicle's; paint that both show (however blurred) abstains.
        floor = 2 * self.threshold
        ghostly = int(
            np.count_nonzero(
                (background_strength > floor) & (frame_strength < 0.5 * background_strength)
            )
        )
        solid = int(
            np.count_nonzero(
                (frame_strength > floor) & (background_strength < 0.5 * frame_strength)
            )
        )
        if ghostly >= 8 and ghostly > 2 * solid:
            return True
        return self._road_carries_on(grey, region, hull, box_xywh)

    def _road_carries_on(
        self,
        grey: GreyImage,
        region: Mask,
        hull: cv2.typing.MatLike,
        box_xywh: tuple[int, int, int, int],
    ) -> bool:
        """Whether, over most of the foreground in the box, the frame shows levels found on
        the road around it and the background does not: the frame shows the road carrying
        on where the background still holds the object (a dark car, the pool of light its
        headlights threw). ``region`` is the box's mask, ``hull`` its convex outline in box
        pixels.

        Only the ring around the outline in the frame counts as road: the mask of a ghost
        can be smaller than the ghost (where the road it uncovered passes for lit road, see
        ``_foreground``), so the background around it may still hold part of the object.
        """
        assert self._background is not None
        height, width = grey.shape
        x, y, w, h = box_xywh
        ring = OUTLINE_RING_PX
        x0, y0 = max(x - ring, 0), max(y - ring, 0)
        x1, y1 = min(x + w + ring, width), min(y + h + ring, height)
        shown = np.zeros((y1 - y0, x1 - x0), np.uint8)
        shown[y - y0 : y - y0 + h, x - x0 : x - x0 + w] = region
        outline = np.zeros_like(shown)
        cv2.fillConvexPoly(outline, hull + np.array([x - x0, y - y0], np.int32), 255)
        around = cv2.subtract(cv2.dilate(outline, _KERNEL_3, iterations=ring), outline) > 0
        frame = grey[y0:y1, x0:x1]
        road = frame[around]
        inside = shown > 0
        if road.size == 0:
            return False
        frame_foreign = foreign_levels(frame[inside], road=road, margin=self.threshold)
        background_foreign = foreign_levels(
            self._background[y0:y1, x0:x1][inside] * self._gain, road=road, margin=self.threshold
        )
        ghostly = int(np.count_nonzero(background_foreign & ~frame_foreign))
        solid = int(np.count_nonzero(frame_foreign & ~background_foreign))
        return ghostly > GHOST_LEVEL_SHARE * frame_foreign.size and ghostly > 2 * solid

    def relearn(self, grey: GreyImage, box_xywh: tuple[int, int, int, int]) -> None:
        """Take the frame as the background inside the box (where a ghost was)."""
        if self._background is None:
            return
        x, y, w, h = box_xywh
        self._background[y : y + h, x : x + w] = grey[y : y + h, x : x + w] / self._gain

    def _foreground(
        self,
        grey: GreyImage,
        scratch: _Scratch,
        background: npt.NDArray[np.float32],
        whole: Mask | None = None,
    ) -> tuple[Mask, Mask]:
        """The foreground mask, and the mask of what was left out of it as lit road.

        Frame and model are compared in whole sublevels (``SUBLEVELS``), the model's
        expected level rounded to the nearest. Each step is one OpenCV call into a buffer reused
        frame after frame, so the masks are those of the plain numpy formulation, bit for
        bit, with a fraction of its passes over memory.
        """
        s = scratch
        gain, noise = _exposure(grey, background)
        self._gain = gain
        self.threshold = max(self._min_threshold, self._noise_factor * noise)
        np.multiply(grey, SUBLEVELS, out=s.frame, dtype=np.int16)
        # A sensor saturates: under a rising gain, white paint stops at 255, not above. The
        # expected level is rounded to the nearest sublevel (the cast to int16 rounds down).
        np.multiply(background, gain * SUBLEVELS, out=s.product)
        cv2.threshold(s.product, _TOP_LEVEL, _TOP_LEVEL, cv2.THRESH_TRUNC, dst=s.product)
        np.add(s.product, 0.5, out=s.product)
        np.copyto(s.expected, s.product, casting="unsafe")
        # Only what lies outside the background's 3x3 range counts, so a one-pixel shake does
        # not light up every painted edge.
        _outside_range(
            s.frame,
            s.expected,
            high=s.high,
            low=s.low,
            above=s.brighter,
            below=s.darker,
            out=s.excess,
        )
        # Of the range only its width is used from here on, so it takes over the range's
        # buffers (as do the frame's edges): fewer buffers stay in the CPU's cache.
        edge_allowance = s.high
        cv2.subtract(s.high, s.low, dst=edge_allowance)
        # Light thrown on the road (headlight beams, a street lamp) brightens it without
        # adding the edges a vehicle brings: a brighter pixel whose neighbourhood shows no
        # more structure than the background's is illumination, not an object. A light
        # vehicle keeps its outline (and so its box); a beam keeps at most a thin rim.
        # Edges are 3x3 morphological gradients (max - min); the frame's are whole grey
        # levels, so they are taken on the uint8 image.
        cv2.dilate(grey, _KERNEL_3, dst=s.grey_high)
        cv2.erode(grey, _KERNEL_3, dst=s.grey_low)
        frame_edges = s.low
        cv2.subtract(s.grey_high, s.grey_low, dst=s.grey_high)
        np.multiply(s.grey_high, SUBLEVELS, out=frame_edges, dtype=np.int16)
        shaken = self._shaken(edge_allowance, frame_edges, paint=s.painted)
        glow_edges = _whole_levels(GLOW_EDGE_FACTOR * self.threshold * SUBLEVELS)
        np.add(edge_allowance, glow_edges, out=edge_allowance)
        cv2.compare(s.brighter, s.darker, cv2.CMP_GT, dst=s.glow)
        cv2.compare(frame_edges, edge_allowance, cv2.CMP_LE, dst=s.grey_low)
        cv2.bitwise_and(s.glow, s.grey_low, dst=s.glow)
        # The one-sided excesses are spent: their buffers serve as scratch from here on.
        if shaken:
            if whole is not None:
                cv2.subtract(s.painted, whole, dst=s.painted)
            _drop_shaken_paint(s)
        # Averaging over 3x3 lets a large faint region (a car nearly the road's grey) pass a
        # threshold that single noisy pixels do not.
        smooth = s.brighter
        cv2.blur(s.excess, (3, 3), dst=smooth)
        threshold = self.threshold * SUBLEVELS
        lit = cv2.bitwise_and(_above(smooth, threshold, out=s.grey_high), s.glow)
        # x - x is 0: the excess is cleared where the frame is lit.
        cv2.subtract(s.excess, s.excess, dst=s.excess, mask=s.glow)
        cv2.blur(s.excess, (3, 3), dst=smooth)
        raw = _above(smooth, threshold, out=s.grey_high)
        closed = cv2.erode(cv2.dilate(raw, _KERNEL_3, dst=s.grey_low), _KERNEL_3, dst=raw)
        opened = cv2.dilate(cv2.erode(closed, _KERNEL_3, dst=s.grey_low), _KERNEL_3)
        return np.asarray(opened), np.asarray(lit)

    def _shaken(
        self,
        edge_allowance: Levels,
        frame_edges: Levels,
        *,
        paint: Mask,
    ) -> bool:
        """Whether the camera shakes: the frame shows its painted structure sharper than
        the background (a running average of shifted frames) holds it, over much of it.

        Measured on the simulator: a shaking camera shows 33-44% of painted pixels sharper
        by two thresholds, a steady one 1-8% (vehicles standing on paint), so the share,
        taken from every 4th pixel each way, is smoothed over a second and compared with
        ``SHAKEN_SHARE``. While it shakes, ``paint`` is left marking the paint.
        """
        threshold = self.threshold * SUBLEVELS
        allowance = edge_allowance[::4, ::4]
        painted = allowance > PAINT_EDGE_FACTOR * threshold
        sharper = (frame_edges[::4, ::4] - allowance) > SHARPER_FACTOR * threshold
        count = np.count_nonzero(painted)
        share = np.count_nonzero(sharper & painted) / count if count else 0.0
        if self._sharper_paint is None:
            self._sharper_paint = share
        self._sharper_paint += self._alpha_shake * (share - self._sharper_paint)
        if self._sharper_paint <= SHAKEN_SHARE:
            return False
        _above(edge_allowance, PAINT_EDGE_FACTOR * threshold, out=paint)
        return True

    def _scratch_for(self, grey: GreyImage) -> _Scratch:
        if self._scratch is None or self._scratch.grey_high.shape != grey.shape:
            self._scratch = _Scratch(grey.shape)
        return self._scratch


class _Scratch:
    """Working buffers of one frame size, reused frame after frame: the same memory stays
    hot in cache, and no temporary is allocated per step. A buffer whose content is spent
    takes the next step's result (see ``SelectiveBackground._foreground``), so less of the
    model and the frame is pushed out of the CPU's cache."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        def levels() -> Levels:
            return np.empty(shape, np.int16)

        def u8() -> Mask:
            return np.empty(shape, np.uint8)

        self.product, self.normalised = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self.frame, self.expected, self.high, self.low = levels(), levels(), levels(), levels()
        self.brighter, self.darker, self.excess = levels(), levels(), levels()
        self.grey_high, self.grey_low, self.glow = u8(), u8(), u8()
        self.painted = u8()


def foreign_levels(
    values: npt.NDArray[np.uint8 | np.float32], *, road: GreyImage, margin: float
) -> npt.NDArray[np.bool_]:
    """Which ``values`` lie outside the range of the ``road`` levels, widened by ``margin``.

    Paint and texture on the road fall within its range; a dark car, or the pool of a
    headlight beam, does not.

    >>> road = np.array([48, 50, 120], np.uint8)
    >>> foreign_levels(np.array([10, 50, 122, 130], np.uint8), road=road, margin=3.0).tolist()
    [True, False, False, True]
    """
    low, high = float(road.min()) - margin, float(road.max()) + margin
    return np.asarray((values < low) | (values > high))


def _drop_shaken_paint(s: _Scratch) -> None:
    """Lower the excess on painted structure (``s.painted``) to what a shaken camera cannot
    explain.

    The running average of a shaking camera blurs a thin painted line: its peak is lower
    and wider than the line any one frame shows, so the sharp line rises above even the
    background's 3x3 range. Seen the other way round it does not: the background's value
    lies within the frame's own 3x3 range, whereas a vehicle hides the road the background
    holds. On paint the excess is the lesser of the two (a vehicle there loses its rim).
    """
    # The one-sided excesses are spent by now (see SelectiveBackground._foreground).
    hi, lo = s.brighter, s.darker
    _outside_range(s.expected, s.frame, high=hi, low=lo, above=hi, below=lo, out=hi)
    cv2.min(s.excess, hi, dst=hi)
    cv2.copyTo(hi, s.painted, s.excess)


def _outside_range(
    values: Levels,
    around: Levels,
    *,
    high: Levels,
    low: Levels,
    above: Levels,
    below: Levels,
    out: Levels,
) -> None:
    """``out``: how far ``values`` lie outside the 3x3 range of ``around`` (0 inside it).

    Leaves that range in ``high``/``low`` and the one-sided excesses in ``above``/``below``;
    a caller that needs none of them may pass the same buffers (OpenCV works in place).
    """
    cv2.dilate(around, _KERNEL_3, dst=high)
    cv2.erode(around, _KERNEL_3, dst=low)
    cv2.subtract(values, high, dst=above)
    cv2.subtract(low, values, dst=below)
    cv2.max(above, below, dst=out)


def _above(values: Levels, threshold: float, *, out: Mask) -> Mask:
    """``out`` set to 255 where ``values > threshold``, else 0."""
    np.greater(values, _whole_levels(threshold), out=out.view(np.bool_))
    return np.multiply(out, 255, out=out)


def _whole_levels(levels: float) -> int:
    """``floor(levels)``, at most the top level: whole sublevels compare with it as with
    ``levels`` (``v > x`` is ``v > floor(x)``, ``v <= x`` is ``v <= floor(x)``), and it fits int16.

    >>> _whole_levels(48.7), _whole_levels(1e6)
    (48, 16320)
    """
    return min(math.floor(levels), _TOP_LEVEL)


def _exposure(grey: GreyImage, background: npt.NDArray[np.float32]) -> tuple[float, float]:
    """The frame's global gain over the background, and its sensor noise (grey levels).

    Both come from every 4th pixel in each direction: exposure and illumination drift scale
    the whole picture, so the median per-pixel ratio is that gain (vehicles, a minority of
    pixels, do not move a median), and the MAD of what is left after taking it out is noise.
    """
    sample_frame = grey[::4, ::4].astype(np.float32)
    sample_background = background[::4, ::4]
    gain = float(_median((sample_frame + 1.0) / (sample_background + 1.0)))
    residual = sample_frame - sample_background * gain
    residual -= _median(residual.copy())
    np.abs(residual, out=residual)
    return gain, 1.4826 * float(_median(residual))


def _median(values: npt.NDArray[np.float32]) -> np.float32:
    """``np.median`` of a float32 array, with the same float32 rounding, sorting ``values``
    in place. numpy's SIMD sort takes a few microseconds for the exposure samples, steadily;
    np.median's two-rank introselect takes 5-40 times as long, and a one-rank quickselect
    slows down just as much when most samples are equal (a flat, unchanged scene).

    >>> float(_median(np.array([3, 1, 2, 10], np.float32)))
    2.5
    """
    flat = values.reshape(-1)
    flat.sort()
    half = flat.size // 2
    if flat.size % 2:
        return np.float32(flat[half])
    return np.float32((flat[half - 1] + flat[half]) / np.float32(2.0))
