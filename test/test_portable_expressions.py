"""Fuller expressions of the portable renderer: a smile raises the cheeks and the lower lids, so
the eyes narrow, and the package's perception reads the narrowing."""
import numpy as np
import pytest

from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.face_rig import _CHEEKS
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.portable.perception import FacePerceiver, params_from_landmarks
from avatar_forcing_ros.portable.portrait import default_portrait

I = ms.INDEX


@pytest.fixture(scope="module")
def renderer() -> PortableRenderer:
    return PortableRenderer(RendererConfig(output_size=512), portrait=default_portrait())


def test_a_smile_lifts_cheeks_and_lower_lids(renderer):
    rig = renderer.rig
    rest, smiling = rig.deform(ms.NEUTRAL), rig.deform(ms.from_dict({"smile": 1.0}))
    lift = (rest - smiling)[:, 1] / rig.scale                          # upwards, in eye distances
    lower_lids = list(lm.LEFT_LOWER_LID + lm.RIGHT_LOWER_LID)
    assert lift[lower_lids].min() >= 0.04                              # the eyes narrow from below
    assert lift[list(_CHEEKS)].mean() >= 0.04                          # the cheeks rise
    corners = [lm.MOUTH_LEFT, lm.MOUTH_RIGHT]
    assert lift[corners].min() >= 0.1                                  # corners up ...
    width = lambda v: v[lm.MOUTH_RIGHT, 0] - v[lm.MOUTH_LEFT, 0]      # noqa: E731
    assert (width(smiling) - width(rest)) / rig.scale >= 0.15          # ... and out


def test_perception_reads_the_eyes_narrowing_in_a_smile(renderer):
    with FacePerceiver(static_image_mode=True) as perceiver:
        rest, smiling = (params_from_landmarks(perceiver.landmarks(renderer.render_frame(ms.from_dict({"smile": s}))),
                                               perceiver.calibration, clip=False) for s in (0.0, 1.0))
    closure = np.mean([smiling[I[e]] - rest[I[e]] for e in ("blink_left", "blink_right")])
    assert closure > 0.15                                              # measured 0.25


def test_a_tiny_eye_takes_its_lid_colour_from_the_inner_corner():
    """An eye of a few pixels (a small face in a large portrait) has too little lid skin for a
    median: the colour at its inner corner is used (this path raised NameError)."""
    from avatar_forcing_ros.portable.eyelids import Eyelids
    portrait = np.full((64, 64, 3), 90, np.uint8)
    portrait[10, 20] = (1, 2, 3)
    points = np.zeros((478, 3), np.float32)
    points[:, :2] = (20, 10)          # every landmark on one pixel
    assert all(np.array_equal(skin, [1, 2, 3]) for skin in Eyelids(portrait, points).skin)
