"""Portraits as people have them: transparent PNGs, greyscale photos, small images, non-images.

Files are written by the test from the default portrait, read through the package's image loader
and animated by the portable renderer.
"""
import logging

import cv2
import numpy as np
import pytest

from avatar_forcing_ros.media.images import NEUTRAL_BACKGROUND, load_image
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.portable.portrait import default_portrait

OPEN = ms.from_dict({"jaw_open": 1.0})


def _bgr(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _chroma(image):
    image = image.astype(np.int16)
    return image.max(axis=2) - image.min(axis=2)


def _mouth_change(renderer):
    """Pixels the opened mouth paints: (mask, open frame)."""
    closed, opened = renderer.render(np.stack([ms.NEUTRAL, OPEN]))
    return np.abs(opened.astype(np.int16) - closed).max(axis=2) > 30, opened


def test_transparent_png_is_composited_on_the_neutral_background(tmp_path):
    rgb = default_portrait()
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    cv2.ellipse(alpha, (250, 160), (130, 170), 0, 0, 360, 255, -1)        # the head stays opaque
    rgba = np.dstack([rgb * (alpha[..., None] > 0), alpha])              # hidden pixels are black
    cv2.imwrite(str(tmp_path / "cutout.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    image = load_image(tmp_path / "cutout.png")
    assert image.shape == rgb.shape and image.dtype == np.uint8
    assert (image[alpha == 0] == NEUTRAL_BACKGROUND).all()
    assert (image[alpha == 255] == rgb[alpha == 255]).all()
    frame = PortableRenderer(RendererConfig(output_size=320), portrait=image).render(ms.NEUTRAL[None])[0]
    assert np.abs(frame[:8, :8].astype(int) - NEUTRAL_BACKGROUND).max() <= 2    # not black


def test_greyscale_portrait_gets_a_mouth_in_its_own_tones(tmp_path):
    grey = cv2.cvtColor(default_portrait(), cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)                         # a one-channel file
    image = load_image(tmp_path / "grey.png")
    assert image.shape == (512, 512, 3) and (image == grey[..., None]).all()
    mouth, opened = _mouth_change(PortableRenderer(RendererConfig(output_size=320), portrait=image))
    assert mouth.sum() > 50                                               # the mouth does open
    assert _chroma(opened)[mouth].max() <= 3                              # and stays grey
    # a colour photograph keeps its coloured mouth interior
    mouth, opened = _mouth_change(PortableRenderer(RendererConfig(output_size=320),
                                                   portrait=default_portrait()))
    assert np.median(_chroma(opened)[mouth]) > 20


def test_sepia_portrait_mouth_takes_the_portraits_tint():
    grey = cv2.cvtColor(default_portrait(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    sepia = np.clip(grey[..., None] * np.array([1.07, 0.94, 0.74]), 0, 255).astype(np.uint8)
    mouth, opened = _mouth_change(PortableRenderer(RendererConfig(output_size=320), portrait=sepia))
    r, g, b = (opened[mouth].astype(np.float32) + 1).T
    # the sepia order of the channels, and none of the colour photo's red cavity (r >> g)
    assert np.median(r / g) == pytest.approx(1.07 / 0.94, abs=0.08)
    assert np.median(g / b) == pytest.approx(0.94 / 0.74, abs=0.12)


def test_small_portrait_is_upscaled_with_a_warning_naming_both_sizes(caplog):
    small = cv2.resize(default_portrait(), (256, 200), interpolation=cv2.INTER_AREA)
    with caplog.at_level(logging.WARNING):
        renderer = PortableRenderer(RendererConfig(output_size=512), portrait=small)
    assert renderer.render(ms.NEUTRAL[None]).shape == (1, 512, 512, 3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("256x200" in w and "512x512" in w and "upscaled" in w for w in warnings), warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        PortableRenderer(RendererConfig(output_size=512), portrait=default_portrait())
    assert not [r for r in caplog.records if "upscaled" in r.getMessage()]


def test_a_file_that_is_not_an_image_is_a_clear_error(tmp_path):
    (tmp_path / "face.png").write_text("this is a text file\n")
    with pytest.raises(ValueError, match=r"portrait .*face\.png is not an image"):
        load_image(tmp_path / "face.png", "portrait")
    with pytest.raises(ValueError, match="portrait not found"):
        load_image(tmp_path / "missing.jpg", "portrait")


def test_sixteen_bit_png_is_read_as_eight_bit(tmp_path):
    rgb = default_portrait()
    cv2.imwrite(str(tmp_path / "deep.png"), _bgr(rgb).astype(np.uint16) * 257)
    assert (load_image(tmp_path / "deep.png") == rgb).all()
