"""Paints a plausible mouth interior where the warped lips part further than in the portrait.

Warping alone would fill an opening mouth with stretched lip (or teeth) pixels. Inside the
moved inner-lip contour this draws a dark cavity (darker towards the throat), a tongue hint at
the bottom and upper teeth that stay with the upper lip (the upper jaw does not move), all
anti-aliased and faded in with the extra opening, so a closed mouth shows the photograph as it is.
When the portrait's lips are parted, its own mouth opening (usually its teeth) is reused as the
upper teeth; otherwise a synthetic teeth band follows the upper lip.

The painted colours are those of a colour photograph, brought to the portrait's own tones: a
portrait whose face has little colour (greyscale, sepia, a tinted drawing) gets them with their
brightness kept and their colour replaced by the face's tint, in proportion to how colourless
the face is. A greyscale portrait thus gets a grey mouth, not a red one.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatar_forcing_ros.portable import landmarks as lm

_DEFAULT_TEETH = np.array([228.0, 222.0, 212.0])
_CAVITY_TOP = np.array([70.0, 30.0, 32.0])
_CAVITY_BOTTOM = np.array([24.0, 9.0, 11.0])
_TONGUE = np.array([128.0, 58.0, 60.0])
_LIP = np.array([170.0, 100.0, 100.0])
_LUMA = np.array([0.299, 0.587, 0.114])
_FULL_CHROMA = 40.0            # median face chroma (max - min channel) of a fully coloured face
                               # (the default portrait's: 58; a greyscale one's: 0)
_SUBPIXEL = 3                  # cv2 drawing shift: coordinates in 1/8 pixel
_CONTOUR = list(lm.UPPER_INNER_LIP) + list(lm.LOWER_INNER_LIP[-2:0:-1])


def _polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of (K, 2) pixel polygons, float32 of `shape`."""
    mask = np.zeros(shape, dtype=np.uint8)
    scaled = [np.round(poly * (1 << _SUBPIXEL)).astype(np.int32) for poly in polygons]
    cv2.fillPoly(mask, scaled, 255, lineType=cv2.LINE_AA, shift=_SUBPIXEL)
    return mask.astype(np.float32) / 255.0


class _FaceTone:
    """How much colour a portrait's face has, and its tint (from the landmarks' bounding box)."""

    def __init__(self, portrait: np.ndarray, points: np.ndarray) -> None:
        x0, y0 = np.clip(np.floor(points[:, :2].min(axis=0)).astype(int), 0, None)
        x1, y1 = np.ceil(points[:, :2].max(axis=0)).astype(int) + 1
        face = portrait[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
        if len(face) == 0:
            face = portrait.reshape(-1, 3).astype(np.float32)
        chroma = float(np.median(face.max(axis=1) - face.min(axis=1)))
        self.colourfulness = min(chroma / _FULL_CHROMA, 1.0)
        mean = face.mean(axis=0)
        self.tint = mean / max(float(mean @ _LUMA), 1.0)       # luma 1: brightness kept

    def apply(self, colour: np.ndarray) -> np.ndarray:
        """A colour-photo colour in this portrait's tones (unchanged for a colourful face)."""
        toned = float(colour @ _LUMA) * self.tint
        return np.clip(toned + self.colourfulness * (colour - toned), 0.0, 255.0).astype(np.float32)


class MouthInterior:
    """Mouth-interior painter for one portrait (landmarks in output pixels)."""

    def __init__(self, portrait: np.ndarray, points: np.ndarray, eye_distance: float):
        self.eye_distance = eye_distance
        self.rest_gap = float(np.linalg.norm(points[lm.LOWER_LIP_INNER, :2] - points[lm.UPPER_LIP_INNER, :2]))
        self._own_teeth = self._own_opening(portrait, points) if self.rest_gap >= 3.0 else None
        tone = _FaceTone(portrait, points)
        self.teeth, self.tongue = tone.apply(_DEFAULT_TEETH), tone.apply(_TONGUE)
        self.cavity_top, self.cavity_bottom = tone.apply(_CAVITY_TOP), tone.apply(_CAVITY_BOTTOM)
        self.lip = self._lower_lip_colour(portrait, points, tone.apply(_LIP))

    @staticmethod
    def _lower_lip_colour(portrait: np.ndarray, points: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """Median colour of the portrait's lower lip (between its inner and outer contours)."""
        polygon = np.concatenate([points[list(lm.LOWER_INNER_LIP), :2], points[list(lm.LOWER_OUTER_LIP[::-1]), :2]])
        inside = _polygon_mask(portrait.shape[:2], [polygon]) > 0.5
        pixels = portrait[inside]
        return np.median(pixels, axis=0).astype(np.float32) if len(pixels) >= 4 else fallback

    @staticmethod
    def _own_opening(portrait: np.ndarray, points: np.ndarray) -> tuple | None:
        """The portrait's open-mouth pixels: (patch (h, w, 3), mask (h, w), origin, upper-lip anchor)."""
        contour = points[_CONTOUR, :2]
        x0, y0 = np.floor(contour.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + 2
        x0, y0 = max(x0, 0), max(y0, 0)
        origin = np.array([x0, y0], dtype=np.float64)
        mask = _polygon_mask((y1 - y0, x1 - x0), [contour - origin])
        mask = cv2.erode(mask, np.ones((3, 3), np.uint8))           # keep lip pixels out
        if mask.sum() < 12:
            return None
        patch = portrait[y0:y1, x0:x1].astype(np.float32)
        return patch, mask, origin, points[list(lm.UPPER_INNER_LIP), :2].mean(axis=0)

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
        colour = self.cavity_top + depth * (self.cavity_bottom - self.cavity_top)
        colour = np.broadcast_to(colour, (*shape, 3)).astype(np.float32)
        centre = lower[len(lower) // 2]
        width = float(np.linalg.norm(lower[-1] - lower[0]))
        tongue = np.zeros(shape, dtype=np.uint8)
        cv2.ellipse(tongue, (round(centre[0]), round(centre[1])),
                    (max(1, round(0.3 * width)), max(1, round(0.35 * gap))), 0, 180, 360, 255, -1,
                    cv2.LINE_AA)
        colour = self._blend(colour, cv2.GaussianBlur(tongue, (5, 5), 0).astype(np.float32) / 255.0 * 0.6, self.tongue)
        # The lower lip's inner rim: a lip-coloured band above the moved lower inner contour,
        # so the opening is framed by a lip as in a real open mouth.
        rim = np.concatenate([lower, (lower - 0.05 * self.eye_distance * self._down(moved))[::-1]])
        rim_alpha = cv2.GaussianBlur(_polygon_mask(shape, [rim]), (3, 3), 0)
        colour = self._blend(colour, rim_alpha, 0.85 * self.lip)
        if self._own_teeth is not None:
            return self._blend(colour, *self._moved_own_teeth(shape, moved, origin))
        teeth_h = min(0.07 * self.eye_distance, 0.3 * gap)
        drop = teeth_h * self._down(moved)                   # along the face's own vertical
        upper_band = np.concatenate([upper, (upper + drop)[::-1]])
        teeth_mask = cv2.GaussianBlur(_polygon_mask(shape, [upper_band]), (3, 3), 0)
        fade = 1.0 - 0.15 * np.clip((rows - top) / max(teeth_h, 1.0), 0.0, 1.0)       # (h, 1, 1)
        return self._blend(colour, teeth_mask, self.teeth * self._shade(shape, upper) * fade)

    def _moved_own_teeth(self, shape: tuple[int, int], moved: np.ndarray,
                         origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(alpha (h, w), colour (h, w, 3)) of the portrait's own opening, moved with the upper lip."""
        patch, mask, patch_origin, anchor = self._own_teeth
        shift = moved[list(lm.UPPER_INNER_LIP)].mean(axis=0) - anchor
        tx, ty = patch_origin + shift - origin
        affine = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]], dtype=np.float32)
        size = (shape[1], shape[0])
        layer = cv2.warpAffine(patch, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(mask, affine, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        return alpha, layer

    @staticmethod
    def _down(moved: np.ndarray) -> np.ndarray:
        """Unit vector from forehead to chin of the moved face."""
        down = moved[lm.CHIN] - moved[lm.FOREHEAD]
        return down / max(float(np.linalg.norm(down)), 1e-6)

    @staticmethod
    def _shade(shape: tuple[int, int], lip: np.ndarray) -> np.ndarray:
        """(1, w, 1) darkening towards the mouth corners."""
        cols = np.arange(shape[1], dtype=np.float32)
        centre_x, half = 0.5 * (lip[0, 0] + lip[-1, 0]), max(0.5 * abs(lip[-1, 0] - lip[0, 0]), 1.0)
        return (1.0 - 0.35 * np.clip(np.abs(cols - centre_x) / half, 0.0, 1.0) ** 2)[None, :, None]

    @staticmethod
    def _blend(colour: np.ndarray, alpha: np.ndarray, layer: np.ndarray) -> np.ndarray:
        return colour + alpha[..., None] * (layer - colour)
