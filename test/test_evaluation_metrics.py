"""The evaluator recovers known figures from bags written independently of the recorder."""
from __future__ import annotations

import numpy as np
import pytest

from avatar_forcing_ros.evaluation.evaluate import EvaluationOptions, evaluate_session, load_session
from avatar_forcing_ros.evaluation.msg_types import build_typestore
from avatar_forcing_ros.evaluation.report import text_summary
from avatar_forcing_ros.evaluation.synthetic_bag import SyntheticSession, write_synthetic_bag
from avatar_forcing_ros.portable import motion_space

FRAMES = 750          # 30 s at 25 fps
LAG_SMILE = 12        # avatar smile follows the user's 12 frames later
LAG_YAW = 5           # avatar yaw mirrors the user's 5 frames later
NOISE = 0.05
STD = np.linspace(0.05, 0.5, motion_space.DIM)   # avatar per-dim std where not driven
JAW_LAG = 3


def _smooth(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Zero-mean AR(1) series with unit-ish variance times scale."""
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = 0.9 * x[t - 1] + rng.normal()
    return scale * x / x.std()


def _session() -> tuple[SyntheticSession, dict]:
    rng = np.random.default_rng(7)
    idx = motion_space.INDEX
    user = rng.normal(size=(FRAMES, motion_space.DIM)) * 0.1
    user[:, idx['smile']] = _smooth(rng, FRAMES, 0.3)
    user[:, idx['head_yaw']] = _smooth(rng, FRAMES, 5.0)
    avatar = rng.normal(size=(FRAMES, motion_space.DIM)) * STD
    avatar[LAG_SMILE:, idx['smile']] = user[:-LAG_SMILE, idx['smile']] + rng.normal(
        size=FRAMES - LAG_SMILE) * NOISE
    avatar[LAG_YAW:, idx['head_yaw']] = -user[:-LAG_YAW, idx['head_yaw']]
    # avatar speech: noise whose loudness follows a smooth envelope; the jaw follows 3 frames later
    envelope = np.abs(_smooth(rng, FRAMES, 1.0)) + 0.05
    audio = (rng.uniform(-1, 1, FRAMES * 640) * np.repeat(envelope, 640) * 0.3).astype(np.float32)
    avatar[JAW_LAG:, idx['jaw_open']] = envelope[:-JAW_LAG]
    hold = np.zeros(FRAMES, bool)
    hold[100:110] = True
    nfe = np.where(np.arange(FRAMES) < 400, 10, 6)
    latency = 100.0 + 5.0 * (np.arange(FRAMES) % 2)   # alternately 100 and 105 ms
    session = SyntheticSession(avatar, user_motion=user, motion_latency_ms=latency, is_hold=hold,
                               nfe=nfe, image_jpeg=b'\xff\xd8' + b'\0' * 500, avatar_audio=audio,
                               user_audio=audio, camera_hw=(4, 4), diagnostics=True, no_face_from_s=20)
    expected_smile_r = np.corrcoef(user[:-LAG_SMILE, idx['smile']],
                                   avatar[LAG_SMILE:, idx['smile']])[0, 1]
    return session, {'smile_r': expected_smile_r, 'avatar': avatar}


@pytest.fixture(scope='module', params=['mcap', 'sqlite3'])
def evaluated(request, tmp_path_factory):
    session, expected = _session()
    path = tmp_path_factory.mktemp(request.param) / 'bag'
    counts = write_synthetic_bag(path, session, storage=request.param)
    options = EvaluationOptions()
    loaded = load_session(path, build_typestore(), options)
    return evaluate_session(loaded, options), expected, counts


def test_all_messages_read(evaluated):
    result, _, counts = evaluated
    assert result['ok'], result['problems']
    assert result['message_counts'] == {'/' + k: v for k, v in counts.items()}


def test_latency_and_rate(evaluated):
    result, _, _ = evaluated
    motion = result['latency']['outputs']['avatar_motion']
    assert motion['p50'] == pytest.approx(102.5, abs=2.6) and motion['max'] == pytest.approx(105)
    assert motion['min'] == pytest.approx(100)
    assert result['latency']['end_to_end']['topic_role'] == 'avatar_image_compressed'
    assert result['latency']['end_to_end']['p99'] == pytest.approx(120)
    assert result['latency']['inputs']['camera']['p50'] == pytest.approx(5)
    assert result['latency']['inputs']['user_audio']['p50'] == pytest.approx(25)   # 20 ms chunk + 5
    rate = result['rate']['avatar_motion']
    assert rate['mean_rate_hz'] == pytest.approx(25, rel=1e-3)
    # intervals alternate 45 and 35 ms: std 5 ms, deviation from 40 ms always 5 ms
    assert rate['interval_std_ms'] == pytest.approx(5, abs=0.05)
    assert rate['jitter_p99_ms'] == pytest.approx(5, abs=0.01)
    assert rate['missing_frames'] == 0
    assert result['rate']['avatar_image_compressed']['jitter_p99_ms'] == pytest.approx(0, abs=1e-3)


def test_hold_and_nfe(evaluated):
    gen = evaluated[0]['generation']
    assert gen['hold_frames'] == 10 and gen['longest_hold_run_frames'] == 10
    assert gen['nfe_histogram'] == {'6': FRAMES - 400, '10': 400}
    assert gen['latent_space'] == motion_space.LATENT_SPACE


def test_status_and_diagnostics(evaluated):
    result = evaluated[0]
    assert result['diagnostics'] == {'messages': 30, 'warn_statuses': 30, 'error_statuses': 0}
    assert result['status']['messages'] == 30
    assert result['status']['last_counters']['frames_published'] == 29 * 25


def test_summary_says_what_perception_saw(evaluated):
    status = evaluated[0]['status']          # a face in the first 20 of 30 status seconds
    assert status['face_found_fraction_mean'] == pytest.approx(20 / 30)
    assert status['longest_without_face_s'] == pytest.approx(9.0)
    summary = text_summary([evaluated[0]])
    assert 'face found in camera frames (fraction)' in summary and '0.667' in summary
    assert 'longest time without a face (s)' in summary


def test_reactiveness_recovers_lag_and_r(evaluated):
    result, expected, _ = evaluated
    groups = result['reactiveness']['groups']
    smile = groups['expression']['dims']['smile']
    assert smile['best_lag_frames'] == LAG_SMILE
    assert smile['r'] == pytest.approx(expected['smile_r'], abs=0.01)
    assert groups['expression']['best_lag_frames'] == LAG_SMILE
    assert groups['pose']['best_lag_frames'] == LAG_YAW
    assert groups['pose']['dims']['head_yaw']['r'] == pytest.approx(-1.0, abs=1e-3)
    assert groups['brows']['score'] < 0.2           # brows never follow the user


def test_expressiveness_variance_and_sid(evaluated):
    result, expected, _ = evaluated
    expr = result['expressiveness']
    measured = np.array(expr['variance_per_dim'])
    np.testing.assert_allclose(measured, expected['avatar'].var(axis=0), rtol=1e-4)
    untouched = [motion_space.INDEX[n] for n in ('blink_left', 'gaze_x', 'brow_raise')]
    np.testing.assert_allclose(measured[untouched], STD[untouched] ** 2, rtol=0.15)
    sid = expr['groups']['expression']['sid']
    assert 0 < sid['sid_bits'] <= sid['max_bits']


def test_lipsync_finds_jaw_lag(evaluated):
    lip = evaluated[0]['lipsync']
    assert lip['feature'] == 'jaw_open'
    assert lip['best_lag_frames'] == JAW_LAG
    assert lip['r_best'] > 0.9 and lip['r_at_lag0'] < lip['r_best']


def test_reactiveness_unavailable_without_user_motion(tmp_path):
    session, _ = _session()
    session.user_motion = None
    write_synthetic_bag(tmp_path / 'bag', session)
    options = EvaluationOptions()
    result = evaluate_session(load_session(tmp_path / 'bag', build_typestore(), options), options)
    assert result['reactiveness'] == {'available': False,
                                      'reason': 'unavailable: no user motion in the bag'}


def test_a_bag_recorded_before_the_face_fields_still_reads(tmp_path):
    """GeneratorStatus as it was before face_found_fraction/last_face_age_s: decoded with the
    definition the bag carries; the face rows are n/a, nothing is reported as a problem."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    from avatar_forcing_ros.evaluation.msg_types import find_msg_dir

    text = (find_msg_dir() / 'GeneratorStatus.msg').read_text()
    old_text = text[:text.index('# What camera perception sees')]
    name = 'avatar_forcing_ros/msg/GeneratorStatus'
    old = get_typestore(Stores.ROS2_KILTED)
    old.register(get_types_from_msg(old_text, name))
    cls = old.types[name]
    values = {f: 0 for f in cls.__dataclass_fields__}
    with Writer(tmp_path / 'bag', version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/avatar/generator_status', name, typestore=old)
        for sec in range(3):
            stamp = old.types['builtin_interfaces/msg/Time'](sec=1_700_000_000 + sec, nanosec=0)
            msg = cls(**{**values, 'header': old.types['std_msgs/msg/Header'](stamp=stamp, frame_id=''),
                         'backend': 'portable', 'latent_space': 'portable/face_params_v1',
                         'frames_published': 25 * sec, 'camera_stale': False, 'user_audio_stale': False,
                         'avatar_audio_stale': False})
            writer.write(conn, (1_700_000_000 + sec) * 10**9, old.serialize_cdr(msg, name))
    options = EvaluationOptions()
    loaded = load_session(tmp_path / 'bag', build_typestore(), options)
    assert not loaded.problems, loaded.problems
    status = evaluate_session(loaded, options)['status']
    assert status['last_counters']['frames_published'] == 50
    assert status['face_found_fraction_mean'] is None and status['longest_without_face_s'] is None
