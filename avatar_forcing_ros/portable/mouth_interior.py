"""Paints a plausible mouth interior where the warped lips part further than in the portrait.

Warping alone would fill an opening mouth with stretched lip (or teeth) pixels. Inside the
moved inner-lip contour this draws a dark cavity (darker towards the throat), a tongue hint at
the bottom and an upper-teeth band following the upper lip, all
anti-aliased and faded in with the extra opening, so a closed mouth shows the photograph as it is.
Teeth take the colour of the portrait's own visible teeth when its lips are parted.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatar_forcing_ros.portable import landmarks as lm

_DEFAULT_TEETH = np.array([228.0, 222.0, 212.0])
_CAVITY_TOP = np.array([70.0, 30.0, 32.0])
_CAVITY_BOTTOM = np.array([24.0, 9.0, 11.0])
_TONGUE = np.array([128.0, 58.0, 60.0])
_SUBPIXEL = 3                  # cv2 drawing shift: coordinates in 1/8 pixel
_CONTOUR = list(lm.UPPER_INNER_LIP) + list(lm.LOWER_INNER_LIP[-2:0:-1])


def _polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of (K, 2) pixel polygons, float32 of `shape`."""
    mask = np.zeros(shape, dtype=np.uint8)
    scaled = [np.round(poly * (1 << _SUBPIXEL)).astype(np.int32) for poly in polygons]
    cv2.fillPoly(mask, scaled, 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL)
    return mask.astype(np.float32) / 255.0


class MouthInterior:
    """Mouth-interior painter for one portrait (landmarks in output pixels)."""

    def __init__(self, portrait: np.ndarray, points: np.ndarray, eye_distance: float):
        self.eye_distance = eye_distance
        self.rest_gap = float(np.linalg.norm(points[lm.LOWER_LIP_INNER, :2] - points[lm.UPPER_LIP_INNER, :2]))
        self.teeth = self._teeth_colour(portrait, points)

    def _teeth_colour(self, portrait: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Mean colour of the brightest quarter of the portrait's open mouth, else a default."""
        if self.rest_gap < 3.0:
            return _DEFAULT_TEETH
        inside = _polygon_mask(portrait.shape[:2], [points[_CONTOUR, :2]]) > 0.99
        pixels = portrait[inside].astype(np.float64)
        if len(pixels) < 12:
            return _DEFAULT_TEETH
        luminance = pixels @ np.array([0.299, 0.587, 0.114])
        bright = pixels[luminance >= np.percentile(luminance, 75)].mean(axis=0)
        return 0.5 * bright + 0.5 * _DEFAULT_TEETH if bright.mean() > 120 else _DEFAULT_TEETH

    def paint(self, image: np.ndarray, moved: np.ndarray) -> None:
        """Draw into `image` (S, S, 3) uint8 in place, given moved landmarks (>= 478, 2)."""
        gap = float(np.linalg.norm(moved[lm.LOWER_LIP_INNER] - moved[lm.UPPER_LIP_INNER]))
        strength = float(np.clip((gap - self.rest_gap) / (0.05 * self.eye_distance), 0.0, 1.0))
        if strength <= 0.0:
            return
        contour = moved[_CONTOUR]
        x0, y0 = np.floor(contour.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        origin = np.array([x0, y0], dtype=np.float64)
        shape = (y1 - y0, x1 - x0)
        cavity = cv2.GaussianBlur(_polygon_mask(shape, [contour - origin]), (3, 3), 0)
        colour = self._interior_colour(shape, moved, origin, gap)
        alpha = (strength * cavity)[..., None]
        roi = image[y0:y1, x0:x1].astype(np.float32)
        image[y0:y1, x0:x1] = np.clip(roi + alpha * (colour - roi), 0, 255).astype(np.uint8)

    def _interior_colour(self, shape: tuple[int, int], moved: np.ndarray, origin: np.ndarray,
                         gap: float) -> np.ndarray:
        """(h, w, 3) float32 colour of cavity, tongue and teeth in the ROI."""
        upper = moved[list(lm.UPPER_INNER_LIP)] - origin
        lower = moved[list(lm.LOWER_INNER_LIP)] - origin
        rows = np.arange(shape[0], dtype=np.float32)[:, None, None]
        top = float(upper[:, 1].min())
        depth = np.clip((rows - top) / max(gap, 1.0), 0.0, 1.0)                   # (h, 1, 1)
        colour = _CAVITY_TOP + depth * (_CAVITY_BOTTOM - _CAVITY_TOP)
        colour = np.broadcast_to(colour, (*shape, 3)).astype(np.float32)
        centre = lower[len(lower) // 2]
        width = float(np.linalg.norm(lower[-1] - lower[0]))
        tongue = np.zeros(shape, dtype=np.uint8)
        cv2.ellipse(tongue, (round(centre[0]), round(centre[1])),
                    (max(1, round(0.3 * width)), max(1, round(0.35 * gap))), 0, 180, 360, 255, -1,
                    cv2.LINE_AA)
        colour = self._blend(colour, cv2.GaussianBlur(tongue, (5, 5), 0).astype(np.float32) / 255.0 * 0.6, _TONGUE)
        teeth_h = min(0.07 * self.eye_distance, 0.3 * gap)
        down = moved[lm.CHIN] - moved[lm.FOREHEAD]
        drop = teeth_h * down / max(float(np.linalg.norm(down)), 1e-6)   # along the face's own vertical
        upper_band = np.concatenate([upper, (upper + drop)[::-1]])
        teeth_mask = cv2.GaussianBlur(_polygon_mask(shape, [upper_band]), (3, 3), 0)
        fade = 1.0 - 0.15 * np.clip((rows - top) / max(teeth_h, 1.0), 0.0, 1.0)       # (h, 1, 1)
        return self._blend(colour, teeth_mask, self.teeth * self._shade(shape, upper) * fade)

    @staticmethod
    def _shade(shape: tuple[int, int], lip: np.ndarray) -> np.ndarray:
        """(1, w, 1) darkening towards the mouth corners."""
        cols = np.arange(shape[1], dtype=np.float32)
        centre_x, half = 0.5 * (lip[0, 0] + lip[-1, 0]), max(0.5 * abs(lip[-1, 0] - lip[0, 0]), 1.0)
        return (1.0 - 0.35 * np.clip(np.abs(cols - centre_x) / half, 0.0, 1.0) ** 2)[None, :, None]

    @staticmethod
    def _blend(colour: np.ndarray, alpha: np.ndarray, layer: np.ndarray) -> np.ndarray:
        return colour + alpha[..., None] * (layer - colour)
