"""Portrait sources and framing for the portable renderer.

The default portrait is scikit-image's ``astronaut`` (NASA photograph of Eileen Collins,
public domain), shipped inside the scikit-image wheel, so nothing is downloaded.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from avatar_forcing_ros.portable import landmarks as lm

_LOG = logging.getLogger(__name__)


def default_portrait() -> np.ndarray:
    """The default portrait, (512, 512, 3) uint8 RGB."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def frame_face(image: np.ndarray, points: np.ndarray, size: int,
               framing: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Crop a square around the face and resize it to (size, size).

    ``framing`` is the crop side in forehead-to-chin distances (about 2.6 shows head and
    shoulders); None keeps the largest centred square of the whole image. The crop is moved,
    not shrunk, to stay inside the image where possible. Returns the (size, size, 3) image and
    the landmarks (478, 3) mapped into it (depth scaled like x).
    """
    height, width = image.shape[:2]
    if min(height, width) < size:
        _LOG.warning("portrait %dx%d is smaller than the %dx%d output: upscaled (a portrait of at "
                     "least %d px per side stays sharp)", width, height, size, size, size)
    if framing is None:
        side = float(min(height, width))
        x0, y0 = (width - side) / 2.0, (height - side) / 2.0
    else:
        if framing <= 0:
            raise ValueError(f"framing must be positive or None, got {framing}")
        face_height = float(np.linalg.norm(points[lm.CHIN, :2] - points[lm.FOREHEAD, :2]))
        side = min(framing * face_height, float(min(height, width)))
        centre = 0.5 * (points[lm.FOREHEAD, :2] + points[lm.CHIN, :2])
        x0 = float(np.clip(centre[0] - side / 2.0, 0.0, width - side))
        y0 = float(np.clip(centre[1] - 0.45 * side, 0.0, height - side))
    scale = size / side
    affine = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], dtype=np.float64)
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    framed = cv2.warpAffine(image, affine, (size, size), flags=interpolation,
                            borderMode=cv2.BORDER_REPLICATE)
    mapped = points.astype(np.float32).copy()
    mapped[:, 0] = (mapped[:, 0] - x0) * scale
    mapped[:, 1] = (mapped[:, 1] - y0) * scale
    mapped[:, 2] *= scale
    return framed, mapped
