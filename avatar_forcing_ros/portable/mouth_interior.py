"""Paints a plausible mouth interior where the warped lips part further than in the portrait.

Warping alone would fill an opening mouth with stretched lip (or teeth) pixels. Inside the
moved inner-lip contour this draws, back to front: a dark cavity (darker towards the throat), a
tongue resting on the lower teeth, a row of lower teeth inside the lower lip (both move with the
jaw), and upper teeth that stay with the upper lip (the upper jaw does not move). Just below the
moved lower inner lip it draws the lip's red inner side, which shows as the jaw drops: a pale
lower lip otherwise reads as skin, to a viewer and to MediaPipe (which then placed the lower
lip mid-cavity and read 32-39 % of the opening on the default portrait). Everything is
anti-aliased and faded in with the extra opening, so a closed mouth shows the photograph as it is.
When the portrait's lips are parted, its own upper teeth (the part of its opening within an
incisor's height of the upper lip) are reused; otherwise a synthetic row follows the upper lip.
Synthetic rows are arch-shaped (shorter towards the corners) with faint gaps between teeth
that narrow towards the corners, not a flat band.

The painted colours are those of a colour photograph, brought to the portrait's own tones: a
portrait whose face has little colour (greyscale, sepia, a tinted drawing) gets them with their
brightness kept and their colour replaced by the face's tint, in proportion to how colourless
the face is. A greyscale portrait thus gets a grey mouth, not a red one.
"""
from __future__ import annotations

import cv2
import numpy as np

from avatar_forcing_ros.portable import landmarks as lm

_DEFAULT_TEETH = np.array([236.0, 226.0, 200.0])
_CAVITY_TOP = np.array([70.0, 30.0, 32.0])
_CAVITY_BOTTOM = np.array([24.0, 9.0, 11.0])
_TONGUE = np.array([128.0, 58.0, 60.0])
_LIP = np.array([200.0, 140.0, 130.0])
_INNER_LIP_COLOUR = np.array([165.0, 78.0, 80.0])
_LUMA = np.array([0.299, 0.587, 0.114])
_UPPER_TEETH = 0.09            # visible height of the upper incisors, in eye distances
_LOWER_TEETH = 0.04            # ... of the lower ones (the lower lip covers most of them)
_INNER_LIP = 0.05              # height of the lower lip's inner side at its middle, in eye distances
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


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-6)


def _arch(lip: np.ndarray, reach: np.ndarray, flatness: float = 2.0) -> np.ndarray:
    """Polygon of a band along an inner-lip contour (K, 2) from corner to corner: it reaches
    `reach` (2,) pixels from the lip in the middle and nothing at the corners (as the dental arch
    turns away from the viewer); a smaller `flatness` narrows it sooner towards the corners."""
    centre_x = 0.5 * (lip[0, 0] + lip[-1, 0])
    half = max(0.5 * abs(lip[-1, 0] - lip[0, 0]), 1.0)
    along = np.clip(np.abs(lip[:, 0] - centre_x) / half, 0.0, 1.0)[:, None]    # (K, 1)
    return np.concatenate([lip, (lip + reach * (1.0 - along ** flatness))[::-1]])


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
        lower_lip = self._lower_lip_colour(portrait, points, tone.apply(_LIP))
        # The inner lip in the portrait's light: as much brighter or darker than _LIP as its lip is.
        self.inner_lip = tone.apply(_INNER_LIP_COLOUR) * float(lower_lip @ _LUMA) / float(_LIP @ _LUMA)

    @staticmethod
    def _lower_lip_colour(portrait: np.ndarray, points: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """Median colour of the portrait's lower lip (between its inner and outer contours)."""
        polygon = np.concatenate([points[list(lm.LOWER_INNER_LIP), :2], points[list(lm.LOWER_OUTER_LIP[::-1]), :2]])
        inside = _polygon_mask(portrait.shape[:2], [polygon]) > 0.5
        pixels = portrait[inside]
        return np.median(pixels, axis=0).astype(np.float32) if len(pixels) >= 4 else fallback

    def _own_opening(self, portrait: np.ndarray, points: np.ndarray) -> tuple | None:
        """The portrait's upper teeth: (patch (h, w, 3), mask (h, w), origin, upper-lip anchor).

        Only the part of the open mouth within an upper incisor's height of the upper lip, faded
        out towards its arch-shaped lower edge: the photograph's lower teeth and lower-lip edge,
        carried up with the upper lip, would read as a lower lip that never drops.
        """
        contour = points[_CONTOUR, :2]
        x0, y0 = np.floor(contour.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(contour.max(axis=0)).astype(int) + 2
        x0, y0 = max(x0, 0), max(y0, 0)
        origin = np.array([x0, y0], dtype=np.float64)
        shape = (y1 - y0, x1 - x0)
        mask = _polygon_mask(shape, [contour - origin])
        # Keep lower-lip and corner pixels out, but not the upper edge: the teeth meet the upper lip.
        mask = cv2.erode(mask, np.ones((3, 1), np.uint8), anchor=(0, 0))
        mask = cv2.erode(mask, np.ones((1, 3), np.uint8))
        upper = points[list(lm.UPPER_INNER_LIP), :2] - origin
        reach = _UPPER_TEETH * self.eye_distance * _unit(points[lm.CHIN, :2] - points[lm.FOREHEAD, :2])
        teeth = _polygon_mask(shape, [_arch(upper, reach)])
        mask *= cv2.GaussianBlur(teeth, (0, 0), max(0.15 * float(np.linalg.norm(reach)), 0.5))
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
        # The lower lip's wet inner side shows as the jaw drops (redder and darker than its
        # outside): without it a pale lower lip reads as skin, the opening as a hole in the chin.
        lip_band = _arch(moved[list(lm.LOWER_INNER_LIP)], _INNER_LIP * self.eye_distance * self._down(moved))
        outline = np.concatenate([contour, lip_band])
        x0, y0 = np.floor(outline.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(outline.max(axis=0)).astype(int) + 4
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        origin = np.array([x0, y0], dtype=np.float64)
        shape = (y1 - y0, x1 - x0)
        roi = image[y0:y1, x0:x1].astype(np.float32)
        inner_lip = cv2.GaussianBlur(_polygon_mask(shape, [lip_band - origin]), (5, 5), 0)
        roi += (0.8 * strength * inner_lip)[..., None] * (self.inner_lip - roi)
        cavity = cv2.GaussianBlur(_polygon_mask(shape, [contour - origin]), (3, 3), 0)
        colour = self._interior_colour(shape, moved, origin, gap)
        roi += (strength * cavity)[..., None] * (colour - roi)
        image[y0:y1, x0:x1] = np.clip(roi, 0, 255).astype(np.uint8)

    def _interior_colour(self, shape: tuple[int, int], moved: np.ndarray, origin: np.ndarray,
                         gap: float) -> np.ndarray:
        """(h, w, 3) float32 colour of cavity, tongue and teeth in the ROI, back to front."""
        upper = moved[list(lm.UPPER_INNER_LIP)] - origin
        lower = moved[list(lm.LOWER_INNER_LIP)] - origin
        down = self._down(moved)                             # the face's own vertical
        rows = np.arange(shape[0], dtype=np.float32)[:, None, None]
        top = float(upper[:, 1].min())
        depth = np.clip((rows - top) / max(gap, 1.0), 0.0, 1.0)                   # (h, 1, 1)
        colour = self.cavity_top + depth * (self.cavity_bottom - self.cavity_top)
        colour = np.broadcast_to(colour, (*shape, 3)).astype(np.float32)
        colour = self._blend(colour, *self._tongue(shape, lower, gap, down))
        # Lower teeth: a band just inside the lower lip, mostly hidden at the corners and in shadow.
        lower_h = min(_LOWER_TEETH * self.eye_distance, 0.18 * gap)
        colour = self._blend(colour, *self._teeth_band(shape, lower, -lower_h * down, 0.8, 5, flatness=1.0))
        if self._own_teeth is not None:
            return self._blend(colour, *self._moved_own_teeth(shape, moved, origin))
        upper_h = min(_UPPER_TEETH * self.eye_distance, 0.4 * gap)
        return self._blend(colour, *self._teeth_band(shape, upper, upper_h * down, 1.0, 4))

    def _tongue(self, shape: tuple[int, int], lower: np.ndarray, gap: float,
                down: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, colour) of the tongue: a dome resting on the lower teeth that moves with the jaw,
        darker towards the throat."""
        centre = lower[len(lower) // 2] - 0.08 * gap * down
        width = float(np.linalg.norm(lower[-1] - lower[0]))
        axes = (max(1, round(0.33 * width)), max(1, round(0.42 * gap)))
        angle = float(np.degrees(np.arctan2(-down[0], down[1])))
        dome = np.zeros(shape, dtype=np.uint8)
        cv2.ellipse(dome, (round(centre[0]), round(centre[1])), axes, angle, 180, 360, 255, -1, cv2.LINE_AA)
        alpha = cv2.GaussianBlur(dome, (5, 5), 0).astype(np.float32) / 255.0
        rows = np.arange(shape[0], dtype=np.float32)[:, None, None]
        back = np.clip((centre[1] - rows) / max(axes[1], 1), 0.0, 1.0)          # 0 front .. 1 back
        return alpha, self.tongue * (1.0 - 0.45 * back)

    def _teeth_band(self, shape: tuple[int, int], lip: np.ndarray, reach: np.ndarray,
                    brightness: float, teeth_per_side: int,
                    flatness: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, colour) of a row of teeth along an inner lip contour (K, 2), reaching `reach`
        (2,) pixels from it at the middle and less towards the corners (the dental arch turns
        away), with darker gaps between teeth that narrow towards the corners as the arch does."""
        alpha = cv2.GaussianBlur(_polygon_mask(shape, [_arch(lip, reach, flatness)]), (3, 3), 0)
        centre_x = 0.5 * (lip[0, 0] + lip[-1, 0])
        half = max(0.5 * abs(lip[-1, 0] - lip[0, 0]), 1.0)
        cols = np.clip((np.arange(shape[1], dtype=np.float32) - centre_x) / half, -0.98, 0.98)
        tooth = np.arcsin(cols) / (0.5 * np.pi) * teeth_per_side          # tooth number from the middle
        seam = np.abs(tooth - np.round(tooth))                            # 0 at a gap between teeth
        gaps = 1.0 - 0.08 * np.exp(-(seam / 0.06) ** 2)
        shade = brightness * gaps * (1.0 - 0.35 * np.abs(cols) ** 2)           # (w,)
        return alpha, self.teeth * shade[None, :, None]

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
        return _unit(moved[lm.CHIN] - moved[lm.FOREHEAD])

    @staticmethod
    def _blend(colour: np.ndarray, alpha: np.ndarray, layer: np.ndarray) -> np.ndarray:
        return colour + alpha[..., None] * (layer - colour)
