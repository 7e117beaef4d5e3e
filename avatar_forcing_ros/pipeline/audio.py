"""Small audio helpers shared by the generator (model input) and audio playback (speaker).

Chunks are resampled one by one (each is placed on the timeline by its own stamp); for a
continuous stream fed in pieces see avatar_forcing_ros.media.audio_stream.StreamResampler."""
from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly  # at start-up: importing it in the worker would stall a block


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(frames,) or (frames, channels) float -> (frames,) float32, channels averaged."""
    x = np.asarray(samples, np.float32)
    if x.ndim == 2:
        return x.mean(axis=1).astype(np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be (frames,) or (frames, channels), got shape {x.shape}")
    return x


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of mono float32 audio; a no-op when the rates are equal."""
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    if rate_in == rate_out:
        return samples
    g = gcd(rate_in, rate_out)
    return resample_poly(samples, rate_out // g, rate_in // g).astype(np.float32)
