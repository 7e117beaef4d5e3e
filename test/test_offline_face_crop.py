"""Face crop recipe (reference's square crop with padding ratio) with MediaPipe detection."""
import numpy as np
import pytest
import torch
from skimage import data

from avatar_forcing_ros.core.face_crop import (FaceBox, FaceDetector, center_square, crop_portrait,
                                               crop_video, square_crop, to_model_input,
                                               to_uint8_images)


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


def test_square_crop_recipe_by_hand():
    # box 100x80 centred at (200, 150): half-sizes 50/40 -> bs = 50 * 2 = 100
    box = FaceBox(150, 110, 250, 190, 0.9)
    assert square_crop([box], (480, 640), pad_ratio=1.0) == (100, 50, 200)
    # near the top-left corner: centre (100, 80), bs 100, clipped to 0..200 x 0..180 ->
    # centred square of side 180 around (100, 90)
    near = FaceBox(50, 40, 150, 120, 0.9)
    assert square_crop([near], (480, 640), pad_ratio=1.0) == (10, 0, 180)
    # the mean of several boxes is used (user video)
    a, b = FaceBox(150, 110, 250, 190, 1), FaceBox(170, 110, 270, 190, 1)
    assert square_crop([a, b], (480, 640), 1.0) == (110, 50, 200)
    assert center_square((480, 640)) == (80, 0, 480)


def test_detects_a_real_face_and_crops_around_it(detector):
    img = data.astronaut()                                   # 512x512, face at about x 170-260
    box = detector.detect(img)
    assert box is not None and box.score > 0.5
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    assert 150 < cx < 280 and 50 < cy < 180
    face = crop_portrait(img, 64, detector=detector)
    assert face.shape == (64, 64, 3) and face.dtype == np.uint8
    frames = crop_video([img, np.zeros_like(img), img], 32, detector=detector)
    assert len(frames) == 3 and frames[0].shape == (32, 32, 3)
    assert np.array_equal(frames[0], frames[2])


def test_no_face_gives_none(detector):
    blank = np.full((240, 320, 3), 127, np.uint8)
    assert detector.detect(blank) is None
    assert crop_portrait(blank, 64, detector=detector) is None
    assert crop_video([blank, blank], 64, detector=detector) is None
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((10, 10), np.uint8))


def test_model_input_conversion_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = to_model_input(img)
    assert x.shape == (2, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.isclose(x[0, 0, 0, 0], torch.tensor(img[0, 0, 0, 0] / 127.5 - 1, dtype=torch.float32))
    assert np.array_equal(to_uint8_images(x), img)
    with pytest.raises(ValueError, match="uint8 RGB"):
        to_model_input(np.zeros((8, 8, 3), np.float32))
