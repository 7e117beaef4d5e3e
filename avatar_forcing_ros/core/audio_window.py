"""Per-frame audio features for live streams: a sliding wav2vec2 window, or precomputed features.

The reference encodes each whole track at once; wav2vec2's encoder is bidirectional over the
track, so a live system cannot reproduce it exactly. `SlidingWindowAudioEncoder` keeps the raw
samples that have arrived and, when asked for the features of frames [first, end), encodes one
window of `window_s` seconds that ends at the newest complete frame (so frames before the
newest sample get right context whenever audio arrives ahead of time, e.g. from a TTS) and
returns the rows of the requested frames. The window is aligned on frame boundaries, so frame
j is computed from the same samples as in whole-track encoding; only the context differs.
Repeated requests with no new audio reuse the last window.

Normalisation: the whole-track reference normalises by the track's mean and variance. Live,
the running mean and variance of every sample received so far are used instead (they converge
to the track's); `normalize=False` passes samples through (for already-normalised audio).
With group-norm feature extractors (wav2vec2-base-960h and the parity-tiny model) this choice
makes no measurable difference: the first conv layer's GroupNorm removes any affine change of
the input. That GroupNorm also normalises over the *window's* time axis, which is why the error
against whole-track features decays only slowly with the window length.

Default window 3.0 s, from bench/audio_window_study.py (12 s of espeak-ng speech; each block's
frames read as soon as their audio has arrived; relative Frobenius error of the projected
features against whole-track encoding):

    window s              0.4   0.8   1.2   2     3     4
    parity-tiny           0.55  0.39  0.35  0.28  0.24  0.23
    random wav2vec2-base  0.57  0.48  0.44  0.39  0.33  0.33

(parity-tiny with 0.4 s of audio ahead of the block, as from a TTS: 0.22 at 2 s, 0.17 at 3 s.)
Both models stop improving past 3 s, while wav2vec2's cost grows with the window (base on CPU,
reference timing: 0.05 s for 0.4 s and 0.09 s for 2 s of audio; one window per 0.4 s block).
The figures are from random or tiny weights: re-run the study with the released wav2vec2.

Both classes offer `frames_available()` and `features(first, end)`, so a streaming generator
can take either (`PrecomputedAudioFeatures` wraps whole-track features for exact parity).
"""
from __future__ import annotations

import numpy as np
import torch

from .audio_encoder import NORM_EPS, AudioEncoder

DEFAULT_WINDOW_S = 3.0


class PrecomputedAudioFeatures:
    """Already-encoded features (1, T, dim_a), served by frame index."""

    def __init__(self, features: torch.Tensor):
        if features.dim() != 3 or features.shape[0] != 1:
            raise ValueError(f"expected features (1, T, dim_a), got {tuple(features.shape)}")
        self._features = features

    def frames_available(self) -> int:
        return self._features.shape[1]

    def features(self, first: int, end: int) -> torch.Tensor:
        """Rows [first, end) -> (1, end - first, dim_a)."""
        _check_range(first, end, self.frames_available())
        return self._features[:, first:end]


class SlidingWindowAudioEncoder:
    """Live features of a raw mono stream through `encoder` over a sliding window.

    push(samples) appends raw float samples (range [-1, 1], at cfg.sampling_rate); a push that
    starts after the end of the stream fills the gap with zeros, one that overlaps drops the
    overlapping part. Memory is bounded: samples older than the window (plus a margin) are
    discarded. A push with a NaN or infinite sample raises ValueError and stores nothing: it
    would poison the running normalisation, and with it every later window.
    """

    def __init__(self, encoder: AudioEncoder, window_s: float = DEFAULT_WINDOW_S,
                 normalize: bool = True, margin_frames: int = 50):
        cfg = encoder.cfg
        self.encoder = encoder
        self.spf = cfg.samples_per_frame
        self.window_frames = max(1, round(window_s * cfg.fps))
        self.normalize = normalize
        self._keep_frames = self.window_frames + margin_frames
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0                 # absolute index of _buf[0]
        self._count = 0                     # samples received (absolute end of the stream)
        self._sum = 0.0
        self._sumsq = 0.0
        self._cache: tuple[int, int, torch.Tensor] | None = None

    # ---- input ---------------------------------------------------------------------------
    def push(self, samples: np.ndarray, start_sample: int | None = None) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        bad = np.count_nonzero(~np.isfinite(x))
        if bad:
            raise ValueError(f"audio samples must be finite: {bad} of {x.size} are NaN or inf")
        start = self._count if start_sample is None else int(start_sample)
        if start > self._count:
            x = np.concatenate([np.zeros(start - self._count, dtype=np.float32), x])
        elif start < self._count:
            x = x[self._count - start:]
        if x.size == 0:
            return
        self._sum += float(x.sum(dtype=np.float64))
        self._sumsq += float(np.square(x, dtype=np.float64).sum())
        self._buf = np.concatenate([self._buf, x])
        self._count += x.size
        drop = (self._count // self.spf - self._keep_frames) * self.spf - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop

    @property
    def samples_received(self) -> int:
        return self._count

    def frames_available(self) -> int:
        """Frames whose audio has fully arrived."""
        return self._count // self.spf

    # ---- output --------------------------------------------------------------------------
    def features(self, first: int, end: int) -> torch.Tensor:
        """Features of frames [first, end) -> (1, end - first, dim_a), from the newest window.

        The window ends at `frames_available()` and spans `window_frames` frames (more if the
        request is longer, fewer at the start of the stream).
        """
        newest = self.frames_available()
        _check_range(first, end, newest)
        w_end = newest
        w_start = max(0, min(first, w_end - self.window_frames))
        if w_start * self.spf < self._buf_start:
            raise ValueError(f"frames from {first} are no longer buffered (oldest frame kept: "
                             f"{-(-self._buf_start // self.spf)})")
        if self._cache is None or self._cache[:2] != (w_start, w_end):
            self._cache = (w_start, w_end, self._encode(w_start, w_end))
        return self._cache[2][:, first - w_start:end - w_start]

    def _encode(self, start: int, end: int) -> torch.Tensor:
        a = self._buf[start * self.spf - self._buf_start:end * self.spf - self._buf_start]
        if self.normalize:
            mean = self._sum / self._count
            var = max(self._sumsq / self._count - mean * mean, 0.0)
            a = ((a - mean) / np.sqrt(var + NORM_EPS)).astype(np.float32)
        p = next(self.encoder.parameters())
        audio = torch.from_numpy(np.ascontiguousarray(a))[None].to(p.device, p.dtype)
        with torch.inference_mode():
            return self.encoder.encode(audio, end - start)                 # (1, n, dim_a)


def _check_range(first: int, end: int, available: int) -> None:
    if not 0 <= first < end:
        raise ValueError(f"invalid frame range [{first}, {end})")
    if end > available:
        raise ValueError(f"frames up to {end} requested but only {available} available")
