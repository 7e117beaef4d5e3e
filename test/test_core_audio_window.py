"""Live audio features: sliding window encoder and precomputed features."""

import numpy as np
import pytest
import torch

from avatar_forcing_ros.core.audio_encoder import AudioEncoder, normalize_audio
from avatar_forcing_ros.core.audio_window import (PrecomputedAudioFeatures,
                                                  SlidingWindowAudioEncoder)
from avatar_forcing_ros.core.config import parity_tiny
from fixture_paths import PARITY_TINY as TINY



@pytest.fixture(scope="module")
def enc():
    torch.manual_seed(0)
    return AudioEncoder.from_folder(parity_tiny(), TINY / "wav2vec2").eval()


def _speechy(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return (0.3 * env * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_precomputed_features_are_served_by_frame():
    f = torch.arange(30.0).view(1, 10, 3)
    src = PrecomputedAudioFeatures(f)
    assert src.frames_available() == 10
    assert torch.equal(src.features(2, 5), f[:, 2:5])
    with pytest.raises(ValueError, match="only 10 available"):
        src.features(8, 12)
    with pytest.raises(ValueError, match=r"expected features \(1, T, dim_a\)"):
        PrecomputedAudioFeatures(torch.zeros(10, 3))


@torch.inference_mode()
def test_window_covering_the_track_equals_whole_track(enc):
    raw = _speechy(1.6)                                   # 40 frames
    normed = normalize_audio(raw)
    track = enc.encode(torch.from_numpy(normed)[None], 40)
    live = SlidingWindowAudioEncoder(enc, window_s=2.0, normalize=False)
    for i in range(0, raw.size, 320):                     # 20 ms chunks
        live.push(normed[i:i + 320])
    assert live.frames_available() == 40
    assert torch.allclose(live.features(0, 40), track, atol=1e-5)
    # running normalisation of raw audio converges to the track's statistics
    live_raw = SlidingWindowAudioEncoder(enc, window_s=2.0, normalize=True)
    live_raw.push(raw)
    assert torch.allclose(live_raw.features(0, 40), track, atol=1e-4)


@torch.inference_mode()
def test_frames_use_the_newest_window_and_are_aligned(enc):
    raw = normalize_audio(_speechy(3.0))                  # 75 frames
    live = SlidingWindowAudioEncoder(enc, window_s=0.8, normalize=False)   # 20 frames
    live.push(raw[: 50 * 640])
    got = live.features(40, 50)
    window = enc.encode(torch.from_numpy(raw[30 * 640:50 * 640])[None], 20)
    assert torch.equal(got, window[:, 10:20])
    with pytest.raises(ValueError, match="only 50 available"):
        live.features(45, 55)


def test_buffer_is_bounded_and_gaps_are_zero_filled(enc):
    live = SlidingWindowAudioEncoder(enc, window_s=0.4, normalize=False, margin_frames=5)
    for k in range(200):
        live.push(np.ones(640, dtype=np.float32))
    assert live.samples_received == 200 * 640
    assert live._buf.size <= (10 + 5 + 1) * 640
    with pytest.raises(ValueError, match="no longer buffered"):
        live.features(0, 10)
    live.push(np.ones(640, dtype=np.float32), start_sample=202 * 640)   # one frame missing
    assert live.samples_received == 203 * 640
    assert np.all(live._buf[-2 * 640:-640] == 0)
    live.push(np.full(1280, 2.0, dtype=np.float32), start_sample=202 * 640)  # half overlaps
    assert live.samples_received == 204 * 640
    assert np.all(live._buf[-640:] == 2.0)


@torch.inference_mode()
def test_non_finite_samples_are_refused_and_do_not_poison_later_windows(enc):
    """The running mean and variance once turned NaN for good after one NaN sample."""
    raw = _speechy(1.6)                                   # 40 frames
    live = SlidingWindowAudioEncoder(enc, window_s=2.0)
    live.push(raw[:20 * 640])
    for value in (np.nan, np.inf):
        bad = raw[20 * 640:].copy()
        bad[100] = value
        with pytest.raises(ValueError, match="must be finite: 1 of 12800 are NaN or inf"):
            live.push(bad)
        assert live.samples_received == 20 * 640 and live._buf.size == 20 * 640
    live.push(raw[20 * 640:])
    clean = SlidingWindowAudioEncoder(enc, window_s=2.0)
    clean.push(raw)
    assert torch.equal(live.features(0, 40), clean.features(0, 40))
