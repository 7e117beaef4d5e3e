"""The robot-side idle face (portable/idle_face.py) that the display shows while the avatar stream
is lost: it moves at once (breathing), blinks once the rig is built on the last frame, and falls
back to breathing alone on a frame without a face."""
import numpy as np
import pytest

from avatar_forcing_ros.backends.registry import default_portrait
from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.idle_face import BLINK_CLOSE_S, FIRST_BLINK_S, IdleFace, blink_amount
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig


@pytest.fixture(scope="module")
def last_frame():
    """A frame as the renderer publishes it: the default portrait, neutral, 256 px."""
    renderer = PortableRenderer(RendererConfig(output_size=256), default_portrait("portable"))
    return renderer.render(ms.NEUTRAL[None])[0]


def test_blink_shape_closes_and_reopens():
    starts = np.array([1.0])
    assert blink_amount(0.5, starts) == 0.0
    assert blink_amount(1.0 + BLINK_CLOSE_S, starts) == 1.0
    assert 0.0 < blink_amount(1.0 + BLINK_CLOSE_S / 2, starts) < 1.0
    assert blink_amount(2.0, starts) == 0.0


def test_breathes_before_the_rig_is_ready(last_frame):
    idle = IdleFace(last_frame)
    assert not idle.animated
    quarter, rest = idle.frame(1.0), idle.frame(0.0)      # top of a breath vs its middle
    assert quarter.shape == last_frame.shape and quarter.dtype == np.uint8
    assert np.abs(quarter.astype(int) - rest.astype(int)).mean() > 0.5


def test_blinks_on_the_last_frame_once_prepared(last_frame):
    idle = IdleFace(last_frame)
    idle.prepare(0.0)
    assert idle.face_found and idle.animated
    ready = idle.parameters(0.0)   # (its blinks count from when the rig was ready)
    t_closed = idle._ready_at + FIRST_BLINK_S + BLINK_CLOSE_S
    t_open = idle._ready_at + FIRST_BLINK_S - 0.2
    assert idle.parameters(t_closed)[ms.INDEX["blink_left"]] == 1.0
    assert ready[ms.INDEX["blink_left"]] == 0.0
    closed, opened = idle.frame(t_closed), idle.frame(t_open)
    lids = idle._renderer.landmarks[list(lm.LEFT_UPPER_LID + lm.LEFT_LOWER_LID), :2]
    (x0, y0), (x1, y1) = lids.min(axis=0).astype(int), lids.max(axis=0).astype(int) + 1
    patch = (slice(y0, y1), slice(x0, x1))
    assert np.abs(closed[patch].astype(int) - opened[patch].astype(int)).mean() > 5.0


def test_a_frame_without_a_face_breathes_only():
    flat = np.full((128, 128, 3), 90, np.uint8)
    flat[::8] = 200          # some texture, no face
    idle = IdleFace(flat)
    idle.prepare(0.0)
    assert idle.face_found is False and not idle.animated
    assert not np.array_equal(idle.frame(1.0), idle.frame(0.0))
