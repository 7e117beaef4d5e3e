"""Lip-sync proxy: the avatar's mouth activity against its own speech audio envelope.

The avatar audio is placed on the media timeline by chunk stamp (first sample) and sample rate,
and reduced to an RMS envelope per avatar frame (bins of 1/fps s starting at the first avatar
frame stamp; bins without audio are 0). Mouth activity is ``jaw_open`` in the portable space,
else the frame-to-frame latent speed. Pearson r between envelope[t] and mouth[t + L] is searched
over L = -max_lag..max_lag frames (L > 0: the mouth lags the audio). Unit of lag: frames.
"""
from __future__ import annotations

import numpy as np

from ..session import AudioSeries, MotionSeries
from .align import on_grid
from .motion_groups import mouth_energy
from .stats import lagged_pearson


def rms_envelope(audio: AudioSeries, grid_ns: np.ndarray, fps: float) -> np.ndarray:
    """(T,) RMS of the audio samples falling in each frame bin [grid_t, grid_t + 1/fps); each
    chunk's samples are placed by its own stamp and sample rate (Hz, > 0)."""
    if (audio.sample_rates <= 0).any():
        raise ValueError(f'audio sample rates must be positive, got {audio.sample_rates.min()}')
    lengths = np.array([len(chunk) for chunk in audio.samples], np.int64)
    if lengths.sum() == 0:
        return np.zeros(len(grid_ns))
    samples = np.concatenate(audio.samples).astype(np.float64)                  # (S,)
    starts_s = np.repeat((audio.stamp_ns - grid_ns[0]) / 1e9, lengths)           # (S,)
    rates = np.repeat(audio.sample_rates.astype(np.float64), lengths)            # (S,)
    offsets = np.arange(len(samples)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    bins = np.floor((starts_s + offsets / rates) * fps).astype(np.int64)        # frame per sample
    keep = (bins >= 0) & (bins < len(grid_ns))
    sums = np.bincount(bins[keep], weights=samples[keep] ** 2, minlength=len(grid_ns))
    counts = np.bincount(bins[keep], minlength=len(grid_ns)).astype(np.float64)
    return np.sqrt(np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0))


def lipsync(avatar: MotionSeries | None, audio: AudioSeries | None, fps: float,
            max_lag: int) -> dict:
    """Best-lag correlation of mouth activity with the avatar audio envelope."""
    if avatar is None or len(avatar) < 3:
        return {'available': False, 'reason': 'unavailable: no avatar motion in the bag'}
    if audio is None or len(audio) == 0:
        return {'available': False, 'reason': 'unavailable: no avatar audio in the bag'}
    grid, motion = on_grid(avatar, fps)
    mouth, feature = mouth_energy(avatar.latent_space, motion)
    envelope = rms_envelope(audio, grid, fps)
    if np.ptp(envelope) == 0 or np.ptp(mouth) == 0:
        return {'available': False, 'reason': 'unavailable: constant audio envelope or mouth'}
    lags = np.arange(-max_lag, max_lag + 1)
    forward = lagged_pearson(envelope[:, None], mouth[:, None], max_lag)[:, 0]    # mouth lags
    backward = lagged_pearson(mouth[:, None], envelope[:, None], max_lag)[:, 0]   # audio lags
    r = np.r_[backward[1:][::-1], forward]
    lags = lags[max_lag - (len(backward) - 1): max_lag + len(forward)]
    if not np.isfinite(r).any():   # e.g. the audio covers too few frames for any lag
        return {'available': False, 'reason': 'unavailable: no lag with a defined correlation'}
    best = int(np.nanargmax(r))
    return {'available': True, 'feature': feature, 'frames': len(grid),
            'best_lag_frames': int(lags[best]), 'best_lag_ms': float(lags[best] * 1000 / fps),
            'r_best': float(r[best]), 'r_at_lag0': float(forward[0]),
            'lags': lags.tolist(), 'r_by_lag': [None if not np.isfinite(v) else float(v) for v in r]}
