"""Image files as people have them -> (H, W, 3) uint8 RGB: the package's one image loader.

- A transparent image (PNG/WebP/TIFF with alpha) is composited on ``NEUTRAL_BACKGROUND``, a
  light grey, instead of whatever colour its transparent pixels happen to hold (usually black).
- A greyscale image becomes three equal channels; 16-bit images are scaled to 8 bits.
- A missing file or one that is not an image raises ValueError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

NEUTRAL_BACKGROUND = (200, 200, 200)     # RGB behind transparent pixels: a light, colourless grey


def load_image(path: str | Path, what: str = "image") -> np.ndarray:
    """Read an image file -> (H, W, 3) uint8 RGB (see the module docstring).

    ``what`` names the file's role in error messages (e.g. "portrait").
    Raises:
        ValueError: the file does not exist or is not an image OpenCV can decode.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ValueError(f"{what} {path} is not an image file that can be read "
                         "(JPEG, PNG, BMP, WebP, TIFF, ...)")
    return to_rgb(image)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """An image as OpenCV decodes it ((H, W) grey, (H, W, 3) BGR or (H, W, 4) BGRA; 8 or 16 bit)
    -> (H, W, 3) uint8 RGB, alpha composited on NEUTRAL_BACKGROUND."""
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round()
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image sample type {image.dtype} (8 or 16 bit expected)")
    image = image.astype(np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] in (2, 4):                           # grey + alpha, colour + alpha
        alpha = image[..., -1:] / 255.0
        colour = image[..., :-1]
        background = np.array(NEUTRAL_BACKGROUND[::-1] if colour.shape[2] == 3
                              else NEUTRAL_BACKGROUND[:1], np.float32)
        image = colour * alpha + background * (1.0 - alpha)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    rgb = cv2.cvtColor(np.clip(image.round(), 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(rgb)
