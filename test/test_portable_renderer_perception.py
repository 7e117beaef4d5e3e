"""Portable renderer sanity and perception, including a render -> perceive round trip.

The renderer animates the default portrait; perception must read back what it was told to
show (jaw open, eyes closed, head turned), which checks both sides and their sign conventions.
"""
import subprocess
import sys

import numpy as np
import pytest

from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.portable.perception import FacePerceiver, params_from_landmarks
from avatar_forcing_ros.portable.portrait import default_portrait


@pytest.fixture(scope="module")
def renderer() -> PortableRenderer:
    return PortableRenderer(portrait=default_portrait())


@pytest.fixture(scope="module")
def perceiver():
    with FacePerceiver(static_image_mode=True) as p:
        yield p


def _render(renderer: PortableRenderer, **values: float) -> np.ndarray:
    return renderer.render(ms.from_dict(values)[None])[0]


def _region(points: np.ndarray, indices, margin: int, size: int) -> tuple[slice, slice]:
    xy = points[list(indices), :2]
    x0, y0 = np.maximum(np.floor(xy.min(0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(xy.max(0)).astype(int) + margin, size)
    return slice(y0, y1), slice(x0, x1)


def _change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_motion_space_round_trip_and_groups():
    values = {"head_yaw": 5.0, "jaw_open": 0.4, "gaze_x": -0.3}
    vector = ms.from_dict(values)
    assert vector.shape == (ms.DIM,) and vector.dtype == np.float32
    assert {k: v for k, v in ms.to_dict(vector).items() if v} == pytest.approx(values)
    pose, expr = ms.group_indices("pose"), ms.group_indices("expression")
    assert sorted(np.concatenate([pose, expr]).tolist()) == list(range(ms.DIM))
    assert np.all(ms.clip(np.full(ms.DIM, 1e3)) == ms.HIGH)
    with pytest.raises(ValueError):
        ms.from_dict({"nose_wiggle": 1.0})


def test_perception_on_default_portrait(perceiver):
    obs = perceiver.observe(default_portrait())
    assert obs is not None and obs.landmarks.shape == (lm.NUM_LANDMARKS, 3)
    d = ms.to_dict(obs.params)
    assert abs(d["head_yaw"]) < 8 and abs(d["head_pitch"]) < 8 and abs(d["head_roll"]) < 8
    assert d["smile"] > 0.4                    # the astronaut smiles
    assert d["blink_left"] < 0.3 and d["blink_right"] < 0.3
    assert np.all(obs.params >= ms.LOW) and np.all(obs.params <= ms.HIGH)
    assert -0.5 < obs.face_xy[0] < 0.2 and obs.face_xy[1] < -0.3   # upper middle of the photo


def test_face_position_in_a_synthetic_scene(perceiver):
    """The portrait's head pasted left or right into a 640x480 scene: face_xy follows it."""
    head = default_portrait()[40:220, 140:310]                       # (180, 170, 3)
    xs = {}
    for side, x0 in (("left", 40), ("right", 430)):
        scene = np.full((480, 640, 3), 90, np.uint8)
        scene[250:430, x0:x0 + 170] = head
        obs = perceiver.observe(scene)
        assert obs is not None, side
        xs[side] = obs.face_xy
        assert obs.face_xy[1] > 0.0                                   # lower half of the scene
    assert xs["left"][0] < -0.5 and xs["right"][0] > 0.5


def test_no_face_is_none_not_an_error(perceiver):
    assert perceiver.observe(np.zeros((480, 640, 3), np.uint8)) is None
    assert perceiver.observe(np.full((480, 640, 3), 200, np.uint8)) is None
    with pytest.raises(ValueError):
        perceiver.observe(np.zeros((480, 640), np.uint8))


def test_render_then_perceive_round_trip(renderer, perceiver):
    read = {}
    for name, values in {"neutral": {}, "jaw": {"jaw_open": 0.8}, "blink": {"blink_left": 1.0, "blink_right": 1.0},
                         "yaw+": {"head_yaw": 12.0}, "yaw-": {"head_yaw": -12.0},
                         "pitch+": {"head_pitch": 10.0}, "roll+": {"head_roll": 10.0},
                         "frown": {"smile": -0.5}, "brow": {"brow_raise": 1.0},
                         "gaze+": {"gaze_x": 1.0}, "gaze-": {"gaze_x": -1.0}}.items():
        obs = perceiver.observe(_render(renderer, **values))
        assert obs is not None, name
        read[name] = ms.to_dict(obs.params)
    n = read["neutral"]
    assert read["jaw"]["jaw_open"] > n["jaw_open"] + 0.2
    assert read["blink"]["blink_left"] > n["blink_left"] + 0.2
    assert read["blink"]["blink_right"] > n["blink_right"] + 0.2
    assert read["yaw+"]["head_yaw"] > n["head_yaw"] + 7 and read["yaw-"]["head_yaw"] < n["head_yaw"] - 7
    assert read["pitch+"]["head_pitch"] > n["head_pitch"] + 5
    assert read["roll+"]["head_roll"] > n["head_roll"] + 5
    assert read["frown"]["smile"] < n["smile"] - 0.25          # the portrait already smiles
    assert read["brow"]["brow_raise"] > n["brow_raise"] + 0.25
    assert read["gaze+"]["gaze_x"] > read["gaze-"]["gaze_x"] + 0.3


def test_params_from_landmarks_rejects_bad_shape():
    with pytest.raises(ValueError):
        params_from_landmarks(np.zeros((468, 3)))


def test_rig_moves_points_in_the_documented_directions(renderer):
    rig, p = renderer.rig, renderer.landmarks[:, :2]

    def moved(**values: float) -> np.ndarray:
        return rig.deform(ms.from_dict(values))[: lm.NUM_LANDMARKS] - p

    assert moved(gaze_x=1.0)[lm.LEFT_IRIS[0], 0] > 1 and moved(gaze_y=1.0)[lm.RIGHT_IRIS[0], 1] > 0.5
    assert moved(jaw_open=1.0)[lm.LOWER_LIP_INNER, 1] > 0.25 * rig.scale
    assert abs(moved(jaw_open=1.0)[lm.UPPER_LIP_INNER]).max() < 0.01 * rig.scale
    smile = moved(smile=1.0)
    assert smile[lm.MOUTH_LEFT, 0] < -1 and smile[lm.MOUTH_RIGHT, 0] > 1     # corners out
    assert smile[lm.MOUTH_LEFT, 1] < -1 and smile[lm.MOUTH_RIGHT, 1] < -1    # and up
    blink = moved(blink_left=1.0)
    assert blink[159, 1] > 0.7 * (p[145, 1] - p[159, 1]) and abs(blink[386]).max() < 1e-9
    assert moved(brow_raise=1.0)[105, 1] < -1
    yaw = moved(head_yaw=10.0)
    assert yaw[lm.NOSE_TIP, 0] > yaw[lm.FACE_LEFT_EDGE, 0] > 0                # nose moves most
    assert moved(head_pitch=10.0)[lm.NOSE_TIP, 1] > 1                         # nose goes down
    roll = moved(head_roll=10.0)
    assert roll[lm.FOREHEAD, 0] > 1 and roll[lm.CHIN, 0] < -1                # clockwise


def test_renderer_output_and_regions(renderer):
    size = renderer.config.output_size
    neutral = _render(renderer)
    assert neutral.shape == (size, size, 3) and neutral.dtype == np.uint8
    points = renderer.landmarks
    mouth = _region(points, lm.UPPER_OUTER_LIP + lm.LOWER_OUTER_LIP, 6, size)
    eyes = _region(points, lm.LEFT_UPPER_LID + lm.LEFT_LOWER_LID + lm.RIGHT_UPPER_LID + lm.RIGHT_LOWER_LID, 3, size)
    jaw, blink = _render(renderer, jaw_open=0.6), _render(renderer, blink_left=1.0, blink_right=1.0)
    assert _change(jaw[mouth], neutral[mouth]) > 15
    assert _change(blink[eyes], neutral[eyes]) > 8
    assert _change(jaw[eyes], neutral[eyes]) < 1          # expressions stay local
    assert _change(blink[mouth], neutral[mouth]) < 1
    # the neutral frame is the framed photograph itself
    assert _change(neutral, renderer.image) < 1.0


def test_background_stays_still_and_no_tearing(renderer):
    size = renderer.config.output_size
    neutral = _render(renderer)
    poses = ({"head_yaw": 15.0, "jaw_open": 0.8}, {"head_pitch": -12.0, "head_roll": 10.0, "smile": 1.0},
             {"head_yaw": -15.0, "brow_raise": 1.0, "gaze_x": 1.0})
    frames = renderer.render(np.stack([ms.from_dict(v) for v in poses]))
    border = np.zeros((size, size), bool)
    border[:24], border[-24:], border[:, :24], border[:, -24:] = True, True, True, True
    for frame in frames:
        assert _change(frame[border], neutral[border]) < 0.05
        assert _change(frame, neutral) > 1.0                       # but the face moved
    # No tearing: the sampling map is continuous (small jumps between neighbouring pixels)
    # wherever the photograph shows through, i.e. for poses without a painted mouth opening.
    for values in poses[1:]:
        moved = renderer.rig.deform(ms.from_dict(values))
        map_x, map_y = renderer.warp.sampling_map(moved - renderer.rig.vertices[:, :2])
        assert np.isfinite(map_x).all() and np.isfinite(map_y).all()
        jumps = [np.abs(np.diff(m, axis=a)).max() for m in (map_x, map_y) for a in (0, 1)]
        assert max(jumps) < 6.0, values


def test_mouth_interior_for_closed_lips_in_the_portrait(renderer):
    """A portrait with closed lips has no teeth to reuse: a synthetic teeth band is drawn."""
    from avatar_forcing_ros.portable.mouth_interior import MouthInterior

    points = renderer.landmarks.copy()
    points[list(lm.LOWER_INNER_LIP[1:-1])] = points[list(lm.UPPER_INNER_LIP[1:-1])]   # lips closed
    mouth = MouthInterior(renderer.image, points, renderer.rig.scale)
    assert mouth.rest_gap < 1.0 and mouth._own_teeth is None
    moved = points[:, :2].copy()
    moved[list(lm.LOWER_INNER_LIP[1:-1]), 1] += 0.3 * renderer.rig.scale
    moved[list(lm.LOWER_OUTER_LIP[1:-1]), 1] += 0.3 * renderer.rig.scale
    image = renderer.image.copy()
    mouth.paint(image, moved)
    centre = np.round(0.5 * (moved[lm.UPPER_LIP_INNER] + moved[lm.LOWER_LIP_INNER])).astype(int)
    assert image[centre[1], centre[0]].mean() < renderer.image[centre[1], centre[0]].mean() - 40
    teeth = np.round(moved[lm.UPPER_LIP_INNER] + [0, 2]).astype(int)
    assert image[teeth[1], teeth[0]].mean() > 150                       # light teeth under the lip


def test_renderer_rejects_bad_input(renderer):
    with pytest.raises(ValueError):
        renderer.render(np.zeros((2, ms.DIM + 1), np.float32))
    with pytest.raises(ValueError):
        renderer.render(np.full((1, ms.DIM), np.nan, np.float32))
    with pytest.raises(RuntimeError):
        PortableRenderer().render(np.zeros((1, ms.DIM), np.float32))
    with pytest.raises(ValueError):
        PortableRenderer(RendererConfig(output_size=128)).set_portrait(np.zeros((64, 64, 3), np.uint8))


def test_any_output_size_and_whole_image_framing():
    small = PortableRenderer(RendererConfig(output_size=256, framing=None), portrait=default_portrait())
    frames = small.render(np.stack([ms.NEUTRAL, ms.from_dict({"jaw_open": 1.0, "head_yaw": 20.0})]))
    assert frames.shape == (2, 256, 256, 3) and np.isfinite(frames).all()
    assert _change(frames[0], frames[1]) > 0.2


def test_portrait_from_a_file_of_any_shape(tmp_path):
    import cv2

    from avatar_forcing_ros.media.images import load_image as load_portrait

    wide = cv2.resize(default_portrait()[:, ::-1], (700, 500))          # mirrored, non-square
    path = tmp_path / "portrait.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    renderer = PortableRenderer(RendererConfig(output_size=320), portrait=load_portrait(path))
    frames = renderer.render(np.stack([ms.NEUTRAL, ms.from_dict({"jaw_open": 0.6})]))
    assert frames.shape == (2, 320, 320, 3) and _change(frames[0], frames[1]) > 0.3
    with pytest.raises(ValueError):
        load_portrait(tmp_path / "missing.png")


def test_portable_package_imports_without_ros():
    code = ("import sys; sys.modules['rclpy'] = None\n"
            "import avatar_forcing_ros.portable.behaviour, avatar_forcing_ros.portable.mesh_renderer\n"
            "import avatar_forcing_ros.portable.perception\n"
            "assert not any(m.startswith('rclpy') and sys.modules[m] for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
