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
    lower_lids = list(lm.LEFT_LOWER_LID[2:5] + lm.RIGHT_LOWER_LID[2:5])
    assert lift[lower_lids].min() >= 0.04                              # the eyes narrow from below
    for lid in (lm.LEFT_LOWER_LID, lm.RIGHT_LOWER_LID):                # less towards the corners
        assert lift[lid[0]] < 0.8 * lift[lid[3]] and lift[lid[-1]] < 0.8 * lift[lid[3]]
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


def _moved_point(renderer, values: dict, index: int) -> np.ndarray:
    return renderer.rig.deform(ms.from_dict(values))[index]


def test_the_open_mouth_has_lower_teeth_and_a_tongue_that_follow_the_jaw(renderer):
    """Above the moved lower lip: light lower teeth, then a red tongue, at any opening; they move
    down with the jaw (not a fixed painting), and below the inner lip its red inner side shows."""
    s = renderer.rig.scale
    down = np.array([0.0, 1.0])
    positions = []
    for jaw in (0.6, 1.0):
        frame = renderer.render_frame(ms.from_dict({"jaw_open": jaw})).astype(int)
        lip = _moved_point(renderer, {"jaw_open": jaw}, lm.LOWER_LIP_INNER)
        at = lambda offset: frame[tuple(np.round(lip + offset * s * down).astype(int)[::-1])]  # noqa: E731
        teeth, tongue, inner_lip = at(-0.02), at(-0.08), at(0.025)
        assert teeth.mean() > tongue.mean() + 40 and teeth.mean() > 140, (jaw, teeth, tongue)
        assert tongue[0] > tongue[1] + 30 and tongue.mean() > 50, (jaw, tongue)   # not the cavity
        assert inner_lip[0] > inner_lip[1] + 40, (jaw, inner_lip)            # red, not skin
        positions.append(lip)
    assert positions[1][1] - positions[0][1] > 0.1 * s                      # they moved with the jaw


def test_synthetic_teeth_are_an_arch_of_teeth_not_a_flat_band(renderer):
    """A portrait with closed lips gets synthetic upper teeth: taller in the middle than towards the
    corners, with darker gaps between teeth along a row."""
    from avatar_forcing_ros.portable.mouth_interior import MouthInterior

    points = renderer.landmarks.copy()
    points[list(lm.LOWER_INNER_LIP[1:-1])] = points[list(lm.UPPER_INNER_LIP[1:-1])]   # lips closed
    mouth = MouthInterior(renderer.image, points, renderer.rig.scale)
    moved = points[:, :2].copy()
    for contour in (lm.LOWER_INNER_LIP[1:-1], lm.LOWER_OUTER_LIP[1:-1]):
        moved[list(contour), 1] += 0.35 * renderer.rig.scale
    image = renderer.image.copy()
    mouth.paint(image, moved)
    luma = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114])
    upper = moved[list(lm.UPPER_INNER_LIP)]

    def teeth_height(x: float) -> int:
        top = np.interp(x, upper[:, 0], upper[:, 1])
        column = luma[int(top) + 1: int(top) + 40, int(round(x))]
        return int(np.argmax(column < 120))                  # first dark pixel below the lip

    centre_x, half = 0.5 * (upper[0, 0] + upper[-1, 0]), 0.5 * (upper[-1, 0] - upper[0, 0])
    assert teeth_height(centre_x) >= 5
    assert teeth_height(centre_x + 0.75 * half) < 0.7 * teeth_height(centre_x)
    row_y = int(np.interp(centre_x, upper[:, 0], upper[:, 1])) + 2
    row = luma[row_y, int(centre_x - 0.5 * half): int(centre_x + 0.5 * half)]
    assert row.min() < np.median(row) - 8                                  # gaps between teeth


def test_a_closed_eye_is_an_opaque_lid(renderer):
    """At blink 1 no dark iris or lash smear is left inside the eye's outline, only lid skin and
    the lash line at its lower edge."""
    frame = renderer.render_frame(ms.from_dict({"blink_left": 1.0, "blink_right": 1.0}))
    luma = frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114])
    rest = renderer.image.astype(np.float32) @ np.array([0.299, 0.587, 0.114])
    for upper, lower in ((lm.LEFT_UPPER_LID, lm.LEFT_LOWER_LID), (lm.RIGHT_UPPER_LID, lm.RIGHT_LOWER_LID)):
        iris_rows = renderer.landmarks[list(upper[2:5]), 1].mean() + 2
        xs = renderer.landmarks[list(upper[2:5]), 0]
        band = luma[int(iris_rows): int(iris_rows) + 3, int(xs.min()): int(xs.max())]
        open_band = rest[int(iris_rows): int(iris_rows) + 3, int(xs.min()): int(xs.max())]
        assert open_band.min() < 80                  # the open eye shows its dark iris there
        assert band.min() > 120, band.min()          # the closed lid covers it


def _perceived(perceiver, renderer, values: dict) -> np.ndarray:
    frame = renderer.render_frame(ms.from_dict(values))
    return params_from_landmarks(perceiver.landmarks(frame), perceiver.calibration, clip=False)


def test_brows_raise_and_frown_visibly_and_are_perceived(renderer):
    rig = renderer.rig
    rest = rig.deform(ms.NEUTRAL)
    raised, frown = rig.deform(ms.from_dict({"brow_raise": 1.0})), rig.deform(ms.from_dict({"brow_raise": -1.0}))
    brows = list(lm.LEFT_BROW + lm.RIGHT_BROW)
    assert (rest - raised)[brows, 1].min() >= 0.1 * rig.scale                # brows up
    assert (frown - rest)[brows, 1].min() >= 0.04 * rig.scale                # brows down ...
    inner = lambda v: v[336, 0] - v[107, 0]                                  # noqa: E731
    assert inner(rest) - inner(frown) >= 0.05 * rig.scale                    # ... drawn together
    eyes = list(lm.LEFT_UPPER_LID + lm.RIGHT_UPPER_LID + lm.LEFT_LOWER_LID + lm.RIGHT_LOWER_LID)
    assert np.abs(raised - rest)[eyes].max() < 1e-9 and np.abs(frown - rest)[eyes].max() < 1e-9
    with FacePerceiver(static_image_mode=True) as perceiver:
        brow = {b: _perceived(perceiver, renderer, {"brow_raise": b})[I["brow_raise"]] for b in (-1.0, 0.0, 1.0)}
    assert brow[1.0] > brow[0.0] + 0.5 and brow[-1.0] < brow[0.0] - 0.2, brow   # measured 1.04, -0.01, -0.40


def test_pucker_rounds_the_lips_and_is_perceived(renderer):
    rig = renderer.rig
    rest, pucker = rig.deform(ms.NEUTRAL), rig.deform(ms.from_dict({"mouth_pucker": 1.0}))
    aspect = lambda v: (v[lm.LOWER_LIP_BOTTOM, 1] - v[lm.UPPER_LIP_TOP, 1]) / (v[lm.MOUTH_RIGHT, 0] - v[lm.MOUTH_LEFT, 0])  # noqa: E731
    assert aspect(pucker) > 1.4 * aspect(rest), (aspect(rest), aspect(pucker))   # slit -> oval
    with FacePerceiver(static_image_mode=True) as perceiver:
        change = _perceived(perceiver, renderer, {"mouth_pucker": 1.0}) - _perceived(perceiver, renderer, {})
    assert change[I["mouth_pucker"]] > 0.6, change[I["mouth_pucker"]]          # measured 0.94


@pytest.mark.parametrize("values", [{"jaw_open": 1.0}, {"smile": 1.0}, {"smile": 1.0, "jaw_open": 1.0},
                                    {"brow_raise": 1.0}, {"brow_raise": -1.0},
                                    {"mouth_pucker": 1.0, "jaw_open": 1.0}])
def test_no_fold_at_the_extremes(renderer, values):
    """No mesh triangle turns over at the chin, face outline, eyes or brows at the ends of the
    expression ranges (a wide-open jaw folded the chin over the skin below it; a smile folded the
    eye corners; a raised brow the eye corners). A few slivers at the lip corners remain."""
    rig = renderer.rig
    triangles = renderer.warp.triangulation.simplices

    def signed_area(v: np.ndarray) -> np.ndarray:
        a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
        return (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]

    flipped = triangles[np.sign(signed_area(rig.vertices[:, :2])) != np.sign(signed_area(rig.deform(ms.from_dict(values))))]
    guarded = set(lm.FACE_OVAL + lm.LEFT_UPPER_LID + lm.LEFT_LOWER_LID + lm.RIGHT_UPPER_LID
                  + lm.RIGHT_LOWER_LID + lm.LEFT_BROW + lm.RIGHT_BROW) | set(range(rig.num_landmarks, len(rig.vertices)))
    assert not guarded & set(flipped.ravel().tolist()), flipped
    assert len(flipped) <= 10, flipped


def test_neck_and_shoulders_follow_a_head_turn_a_little(renderer):
    """Below the chin, a row of the frame follows a 15-degree turn by a few pixels in its direction
    (the face moves much more), while the frame's bottom edge stays still."""
    rig = renderer.rig
    shoulders = np.nonzero(rig.head_weight == rig.config.shoulder_head_weight)[0]
    assert len(shoulders) >= 3
    moved = rig.deform(ms.from_dict({"head_yaw": 15.0}))
    shift = (moved - rig.vertices[:, :2])[:, 0]
    nose = shift[lm.NOSE_TIP]
    assert nose > 10.0
    assert 1.0 < np.median(shift[shoulders]) < 0.5 * nose
    map_x, _ = renderer.warp.sampling_map(moved - rig.vertices[:, :2])
    grid_x = np.arange(rig.size, dtype=np.float32)[None, :]
    y = int(rig.vertices[shoulders[0], 1])
    x = int(rig.vertices[shoulders[len(shoulders) // 2], 0])
    assert grid_x[0, x] - map_x[y, x] > 1.0                          # the pixels there moved right
    assert np.abs(map_x[-4:] - grid_x).max() < 0.5                  # the bottom edge stays
