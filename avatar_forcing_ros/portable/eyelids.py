"""Paints closing eyelids: an opaque lid down to the moved lid margin, a lash line along it.

The warp slides the upper lid down and squeezes the eye into a slit, and it drags the
photograph's lashes down into a dark smear on the lid. When a blink passes ``start`` this paints
the lid as a curtain: lid-skin colour (sampled from the portrait just below the brow), darkening
towards a soft dark lash line along the moved margin, over the band from the margin up towards
the crease. Below the margin the eye stays as the warp shows it, until the lids nearly meet and
the remaining slit is covered too. (Painting skin translucently over the whole opening, as
before, gave a ghostly half-open eye that MediaPipe read as 58 % of a blink on one face.)
"""
from __future__ import annotations

import cv2
import numpy as np

from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable import motion_space as ms

_SUBPIXEL = 3
# Fraction of the way from the moved lid margin to the crease ring above it that the lid skin
# covers: enough to hide the photograph's own lashes dragged down by the warp (at 0.6 their ends
# showed as a ragged dark edge on the lid). The fidelity loop (bench/bench_fidelity.py) reads
# 74-169 % of a blink with r >= 0.93 on all four faces with these values.
LASH_COVER = 0.85
LID_FADE = 0.2        # blink amount over which the painted lid skin becomes opaque
SLIT_START = 0.7      # blink amount from which the remaining opening is covered too
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
            blink = float(params[ms.INDEX[name]])
            if blink > self.start:
                self._paint_eye(image, moved, (outer, inner, upper, lower, ring), skin, blink)

    def _paint_eye(self, image: np.ndarray, moved: np.ndarray, eye: tuple, skin: np.ndarray,
                   blink: float) -> None:
        outer, inner, upper, lower, ring = eye
        margin = moved[[outer] + list(upper) + [inner]]                  # the moved lid margin
        # The lid is skin down to its margin; the skin reaches a little above the margin, where
        # the photograph's own lashes, dragged down by the warp, would show as a dark smudge.
        cover = moved[list(upper)] + LASH_COVER * (moved[list(ring)] - moved[list(upper)])
        lid = np.concatenate([moved[[outer]], cover, moved[[inner]], margin[::-1]])
        slit = np.concatenate([margin, moved[list(lower)[::-1]]])
        x0, y0 = np.floor(np.concatenate([lid, slit]).min(axis=0)).astype(int) - 4
        x1, y1 = np.ceil(np.concatenate([lid, slit]).max(axis=0)).astype(int) + 5
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        origin = np.array([x0, y0])
        shape = (y1 - y0, x1 - x0)
        lid_in = float(np.clip((blink - self.start) / LID_FADE, 0.0, 1.0))
        # The remaining opening is covered only as the lids meet (what the warp squeezed into it
        # is no longer an eye but a dark line, read as an open eye).
        slit_in = float(np.clip((blink - SLIT_START) / (1.0 - SLIT_START), 0.0, 1.0))
        lid_alpha = cv2.GaussianBlur(_mask(shape, lid - origin), (7, 7), 0) * lid_in
        slit_alpha = cv2.GaussianBlur(_mask(shape, slit - origin), (3, 3), 0) * slit_in
        lash = np.zeros(shape, dtype=np.uint8)
        lash_line = np.round((margin - origin) * (1 << _SUBPIXEL)).astype(np.int32)
        cv2.polylines(lash, [lash_line], False, 255, 1, cv2.LINE_AA, _SUBPIXEL)
        # A lid is rounded: its skin darkens towards the lashes (a soft shadow band above them).
        shade = cv2.GaussianBlur(lash, (0, 0), 2.5).astype(np.float32) / 255.0
        lash_alpha = cv2.GaussianBlur(lash, (3, 3), 0).astype(np.float32) / 255.0 * 0.8 * lid_in
        roi = image[y0:y1, x0:x1].astype(np.float32)
        skin_alpha = np.maximum(lid_alpha, slit_alpha)[..., None]
        lid_skin = skin * (1.0 - 0.5 * np.clip(shade, 0.0, 0.4))[..., None]
        roi += skin_alpha * (lid_skin - roi)
        roi += lash_alpha[..., None] * (0.3 * skin - roi)
        image[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)


def _mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """Anti-aliased float32 coverage in [0, 1] of one (K, 2) pixel polygon."""
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * (1 << _SUBPIXEL)).astype(np.int32)], 255,
                 lineType=cv2.LINE_AA, shift=_SUBPIXEL)
    return mask.astype(np.float32) / 255.0
