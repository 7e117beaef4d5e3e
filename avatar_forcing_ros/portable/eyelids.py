"""Paints closing eyelids: skin over the remaining eye opening plus a lash line.

The warp slides the upper lid down and squeezes the eye into a slit, but a squeezed eye still
looks like a squint (a dark iris line). When a blink passes ``start`` this fills the moved
eye opening with lid-skin colour sampled from the portrait just below the brow, and draws a
soft dark lash line along the moved upper lid, both faded in with the blink amount.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable import motion_space as ms

_SUBPIXEL = 3
# Fraction of the way from the moved lid margin to the ring above it that the lid skin covers.
# The fidelity loop (bench/bench_fidelity.py) chose it with `start`: at 0.25 / 0.45 MediaPipe read a
# closed eye as half open (10-68 % of a blink perceived); at 0.6 / 0.1, 63-131 % on all four faces.
LASH_COVER = 0.6
_EYES = (
    ("blink_left", lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER, lm.LEFT_UPPER_LID, lm.LEFT_LOWER_LID,
     (113, 225, 224, 223, 222, 221, 189)),
    ("blink_right", lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER, lm.RIGHT_UPPER_LID, lm.RIGHT_LOWER_LID,
     (342, 445, 444, 443, 442, 441, 413)),
)


class Eyelids:
    """Eyelid painter for one portrait (landmarks in output pixels)."""

    def __init__(self, portrait: np.ndarray, points: np.ndarray, start: float = 0.1):
        self.start = start
        self.skin = [self._lid_colour(portrait, points, eye) for eye in _EYES]

    @staticmethod
    def _lid_colour(portrait: np.ndarray, points: np.ndarray, eye: tuple) -> np.ndarray:
        """Median colour of the lid skin: the upper half of the band between the lid margin and the
        ring above it (the lower half holds lashes and the crease, which made closed eyes dark)."""
        _, _, inner, upper, _, ring = eye
        middle = 0.5 * (points[list(upper), :2] + points[list(ring), :2])
        polygon = np.concatenate([middle, points[list(ring)[::-1], :2]])
        mask = np.zeros(portrait.shape[:2], dtype=np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
        pixels = portrait[mask > 0]
        if len(pixels) < 4:
            return portrait[int(points[inner, 1]), int(points[inner, 0])].astype(np.float32)
        return np.median(pixels, axis=0).astype(np.float32)

    def paint(self, image: np.ndarray, moved: np.ndarray, params: np.ndarray) -> None:
        """Draw into `image` (S, S, 3) uint8 in place for moved landmarks (>= 478, 2)."""
        for (name, outer, inner, upper, lower, ring), skin in zip(_EYES, self.skin):
            amount = (float(params[ms.INDEX[name]]) - self.start) / (1.0 - self.start)
            if amount > 0.0:
                self._paint_eye(image, moved, outer, inner, upper, lower, ring, skin, min(amount, 1.0))

    @staticmethod
    def _paint_eye(image: np.ndarray, moved: np.ndarray, outer: int, inner: int, upper: tuple,
                   lower: tuple, ring: tuple, skin: np.ndarray, amount: float) -> None:
        top = moved[[outer] + list(upper) + [inner]]
        # The skin reaches a little above the moved lid margin: the photograph's own lashes ride
        # down with the lid and would otherwise stay as a dark smudge on the closed eye.
        cover = moved[list(upper)] + LASH_COVER * (moved[list(ring)] - moved[list(upper)])
        opening = np.concatenate([moved[[outer]], cover, moved[[inner]], moved[list(lower)[::-1]]])
        x0, y0 = np.floor(opening.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(opening.max(axis=0)).astype(int) + 4
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        origin = np.array([x0, y0])
        scale = 1 << _SUBPIXEL
        fill = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        outline = np.round((opening - origin) * scale).astype(np.int32)
        cv2.fillPoly(fill, [outline], 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL)
        cv2.polylines(fill, [outline], True, 255, 2, cv2.LINE_AA, _SUBPIXEL)   # cover the slit's rim
        lash = np.zeros_like(fill)
        lash_line = np.round((top - origin) * scale).astype(np.int32)
        cv2.polylines(lash, [lash_line], False, 255, 1, cv2.LINE_AA, _SUBPIXEL)
        fill_alpha = cv2.GaussianBlur(fill, (5, 5), 0).astype(np.float32) / 255.0 * amount
        lash_alpha = cv2.GaussianBlur(lash, (3, 3), 0).astype(np.float32) / 255.0 * 0.6 * amount
        roi = image[y0:y1, x0:x1].astype(np.float32)
        roi += fill_alpha[..., None] * (skin - roi)
        roi += lash_alpha[..., None] * (0.35 * skin - roi)
        image[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)
