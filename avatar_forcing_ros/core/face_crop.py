"""Face crop of portraits and user frames, following the reference's recipe.

Recipe (the reference's `preprocess_face` and user-video preprocessing):
1. resize the image to 360 px high (INTER_AREA when shrinking, else INTER_CUBIC) and detect the
   face there; map the box back to the original pixels;
2. half-sizes bsx, bsy and centre (mx, my) of the box; half-side bs = max(bsx, bsy) * (1 + pad_ratio)
   (pad_ratio 1.0: the crop is about twice the face box);
3. clip the square [mx-bs, mx+bs] x [my-bs, my+bs] to the image, then take the largest square
   centred in the clipped box;
4. resize the crop to input_size (same interpolation rule as step 1).
For a user video the boxes of all frames are averaged and one crop is applied to every frame.

Detector: MediaPipe's BlazeFace (`mp.solutions.face_detection`, the model ships inside the
`mediapipe` wheel; nothing is downloaded), full-range model. The reference uses face_alignment's
S3FD; box conventions differ slightly, so crops are close to, not identical with, the reference's.
When no face is found `crop_portrait` returns None and `crop_video` skips the frame in the
average (None if no frame has a face); callers decide the fallback (`center_square` is the
documented one: the largest centred square).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

DETECT_HEIGHT = 360          # the reference detects on a 360-px-high copy
DEFAULT_PAD_RATIO = 1.0


@dataclass(frozen=True)
class FaceBox:
    """Face box in pixels of the original image, and the detector's score."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float


def _interpolation(height: int) -> int:
    return cv2.INTER_AREA if DETECT_HEIGHT / height < 1.0 else cv2.INTER_CUBIC


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    return image


class FaceDetector:
    """MediaPipe face detection on a 360-px-high copy; returns the best-scoring face or None."""

    def __init__(self, min_confidence: float = 0.5, full_range: bool = True):
        import mediapipe as mp  # heavy import, only when detection is used
        self._mp = mp.solutions.face_detection.FaceDetection(
            min_detection_confidence=min_confidence, model_selection=1 if full_range else 0)

    def detect(self, image: np.ndarray) -> FaceBox | None:
        h, w = _check_rgb(image).shape[:2]
        mult = DETECT_HEIGHT / h
        small = cv2.resize(image, dsize=(0, 0), fx=mult, fy=mult, interpolation=_interpolation(h))
        result = self._mp.process(np.ascontiguousarray(small))
        if not result.detections:
            return None
        best = max(result.detections, key=lambda d: d.score[0])
        box = best.location_data.relative_bounding_box
        sh, sw = small.shape[:2]
        return FaceBox(x1=box.xmin * sw / mult, y1=box.ymin * sh / mult,
                       x2=(box.xmin + box.width) * sw / mult, y2=(box.ymin + box.height) * sh / mult,
                       score=float(best.score[0]))

    def close(self) -> None:
        self._mp.close()

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def square_crop(boxes: Sequence[FaceBox], image_hw: tuple[int, int],
                pad_ratio: float = DEFAULT_PAD_RATIO) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop around the mean of `boxes` (steps 2-3 of the recipe)."""
    if not boxes:
        raise ValueError("square_crop needs at least one face box")
    h, w = image_hw
    bsy = np.mean([int((b.y2 - b.y1) / 2) for b in boxes])
    bsx = np.mean([int((b.x2 - b.x1) / 2) for b in boxes])
    my = np.mean([int((b.y1 + b.y2) / 2) for b in boxes])
    mx = np.mean([int((b.x1 + b.x2) / 2) for b in boxes])
    bs = int(max(bsy, bsx) * (1 + pad_ratio))
    x1, y1 = max(mx - bs, 0), max(my - bs, 0)
    x2, y2 = min(mx + bs, w), min(my + bs, h)
    cx, cy = int(x1 + (x2 - x1) // 2), int(y1 + (y2 - y1) // 2)
    half = int(min(x2 - x1, y2 - y1) // 2)
    if half < 1:
        raise ValueError("the face box lies outside the image")
    return cx - half, cy - half, 2 * half


def center_square(image_hw: tuple[int, int]) -> tuple[int, int, int]:
    """Fallback crop when no face is found: the largest centred square."""
    h, w = image_hw
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, side


def apply_crop(image: np.ndarray, crop: tuple[int, int, int], size: int) -> np.ndarray:
    """Cut the square `crop` and resize it to (size, size, 3) uint8 (step 4 of the recipe)."""
    x0, y0, side = crop
    face = _check_rgb(image)[y0:y0 + side, x0:x0 + side]
    return cv2.resize(face, dsize=(size, size), interpolation=_interpolation(image.shape[0]))


def crop_portrait(image: np.ndarray, size: int, pad_ratio: float = DEFAULT_PAD_RATIO,
                  detector: FaceDetector | None = None) -> np.ndarray | None:
    """Portrait (H, W, 3) uint8 RGB -> face crop (size, size, 3) uint8, or None if no face."""
    own = detector is None
    detector = detector or FaceDetector()
    try:
        box = detector.detect(image)
    finally:
        if own:
            detector.close()
    if box is None:
        return None
    return apply_crop(image, square_crop([box], image.shape[:2], pad_ratio), size)


def crop_video(frames: Sequence[np.ndarray], size: int, pad_ratio: float = DEFAULT_PAD_RATIO,
               detector: FaceDetector | None = None) -> list[np.ndarray] | None:
    """One crop for the whole video from the mean face box of all frames with a face.

    Returns the cropped frames, or None when no frame has a face.
    """
    if not frames:
        raise ValueError("crop_video needs at least one frame")
    own = detector is None
    detector = detector or FaceDetector()
    try:
        boxes = [b for b in (detector.detect(f) for f in frames) if b is not None]
    finally:
        if own:
            detector.close()
    if not boxes:
        return None
    if len(boxes) < len(frames):
        log.info("face found in %d of %d user frames", len(boxes), len(frames))
    crop = square_crop(boxes, frames[0].shape[:2], pad_ratio)
    return [apply_crop(f, crop, size) for f in frames]


def to_model_input(images: np.ndarray | Iterable[np.ndarray]) -> torch.Tensor:
    """(N, S, S, 3) or (S, S, 3) uint8 RGB -> (N, 3, S, S) float32 in [-1, 1] ((x/255 - 0.5)/0.5)."""
    arr = np.asarray(images if isinstance(images, np.ndarray) else np.stack(list(images)))
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB images (N, S, S, 3), got {arr.dtype} {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    return (x / 255.0 - 0.5) / 0.5


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) in [-1, 1] -> (N, S, S, 3) uint8 RGB, clamped, fixed mapping (x + 1) * 127.5.

    (The reference's video writer rescales by the min/max of the whole clip instead, which a
    live renderer cannot know in advance.)
    """
    x = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
