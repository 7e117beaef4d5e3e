"""Numeric pieces: SID diversity, PCA groups, lag search, resampling, audio envelope."""
from __future__ import annotations

import numpy as np
import pytest

from avatar_forcing_ros.evaluation.metrics.expressiveness import sid
from avatar_forcing_ros.evaluation.metrics.reactiveness import reactiveness
from avatar_forcing_ros.evaluation.session import MotionSeries, Session


def _series(latent: np.ndarray, space: str = 'avatar_forcing/lia_motion') -> MotionSeries:
    n = len(latent)
    stamps = 1_000_000_000_000 + np.arange(n, dtype=np.int64) * 40_000_000
    return MotionSeries(stamps, stamps, frame_index=np.arange(n), latent=latent.astype(np.float32),
                        nfe=np.full(n, 10), guidance_branches=np.full(n, 3),
                        is_hold=np.zeros(n, bool), latent_space=space)


def test_sid_diverse_motion_beats_static_motion():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(8, 4)) * 3
    diverse = np.repeat(states[rng.integers(0, 8, 80)], 25, axis=0) + rng.normal(size=(2000, 4)) * 0.1
    static = np.repeat(states[:1], 2000, axis=0) + rng.normal(size=(2000, 4)) * 0.1
    rich = sid(diverse, diverse, clusters=8, window=25)
    poor = sid(diverse, static, clusters=8, window=25)
    assert rich['sid_bits'] > 2.0                  # close to log2(8) = 3 bits
    assert poor['sid_bits'] < 1.0                  # every window lands in the same few clusters
    assert rich['max_bits'] == 3.0


def test_pca_groups_find_lag_in_unnamed_space():
    rng = np.random.default_rng(1)
    latent_user = np.cumsum(rng.normal(size=(1000, 32)), axis=0)
    latent_avatar = np.roll(latent_user, 7, axis=0) + rng.normal(size=(1000, 32)) * 0.1
    session = Session('s', user_motion=_series(latent_user), avatar_motion=_series(latent_avatar))
    result = reactiveness(session, fps=25.0, max_lag=20)
    assert set(result['groups']) == {'all', 'pca'}
    assert result['groups']['all']['best_lag_frames'] == 7
    assert result['groups']['pca']['best_lag_frames'] == 7
    assert result['groups']['pca']['score'] > 0.9


def test_lagged_pearson_matches_direct_correlation():
    from avatar_forcing_ros.evaluation.metrics.stats import lagged_pearson
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 3)) + 50.0
    b = np.roll(a, 4, axis=0) + rng.normal(size=(300, 3))
    a[:, 2] = 1.0                                       # constant column -> NaN
    r = lagged_pearson(a, b, 20)
    for lag in (0, 4, 20):
        for d in range(2):
            direct = np.corrcoef(a[: 300 - lag, d], b[lag:, d])[0, 1]
            assert abs(r[lag, d] - direct) < 1e-9
    assert np.isnan(r[:, 2]).all()
    assert np.argmax(r[:, 0]) == 4


def test_sid_of_motionless_reference_is_zero():
    still = np.zeros((500, 3))
    assert sid(still, still, clusters=40, window=25)['sid_bits'] == 0.0
    few = np.repeat(np.eye(3), 250, axis=0)             # three poses: few distinct windows
    result = sid(few, few, clusters=40, window=25)
    assert result['clusters'] < 20 and 0 < result['sid_bits'] <= result['max_bits']


def test_resample_interpolates_every_column():
    from avatar_forcing_ros.evaluation.metrics.stats import resample
    times = np.array([0, 10, 30, 30, 60], np.int64)             # a duplicate keeps the last value
    values = np.array([[0.0, 1], [10, 1], [99, 1], [30, 1], [60, 2]])
    grid = np.array([0, 5, 20, 45, 60], np.int64)
    out = resample(times, values, grid)
    np.testing.assert_allclose(out[:, 0], [0, 5, 20, 45, 60])
    np.testing.assert_allclose(out[:, 1], [1, 1, 1, 1.5, 2])


def test_rms_envelope_per_frame_bins():
    from avatar_forcing_ros.evaluation.metrics.lipsync import rms_envelope
    from avatar_forcing_ros.evaluation.session import AudioSeries
    rate, t0 = 1000, 5_000_000_000
    # 50 ms of amplitude 1, then 60 ms of amplitude 3; 40 ms frames from 20 ms before the audio
    chunks = [np.full(50, 1.0, np.float32), np.full(60, -3.0, np.float32)]
    stamps = np.array([t0, t0 + 50_000_000], np.int64)
    audio = AudioSeries(stamps, stamps, sample_rates=np.array([rate, rate]), samples=chunks)
    grid = t0 - 20_000_000 + np.arange(5, dtype=np.int64) * 40_000_000
    env = rms_envelope(audio, grid, fps=25.0)
    expected = [1.0, np.sqrt((30 * 1 + 10 * 9) / 40), 3.0, 3.0, 0.0]   # last frame: no audio
    np.testing.assert_allclose(env, expected, rtol=1e-6)


def test_pca_reactiveness_ignores_a_constant_offset_between_user_and_avatar():
    """Each motion is centred on its own mean before the PCA is fitted: an avatar whose neutral
    pose differs from the user's by a constant vector follows the user just as well."""
    rng = np.random.default_rng(3)
    user = np.cumsum(rng.normal(size=(600, 16)), axis=0)
    avatar = np.roll(user, 5, axis=0) + rng.normal(size=user.shape) * 3.0
    scores = []
    for offset in (0.0, 200.0):
        session = Session('s', user_motion=_series(user),
                          avatar_motion=_series(avatar + offset * rng.normal(size=16)))
        scores.append(reactiveness(session, fps=25.0, max_lag=20)['groups']['pca']['score'])
    assert scores[1] == pytest.approx(scores[0], abs=1e-6)
