"""Small audio helpers shared by the generator (model input) and audio playback (speaker).

`resample` converts one chunk on its own (zero-padded edges); the speaker's stream goes through
`ChunkResampler`, which resamples across chunk boundaries so they do not click."""
from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly  # at start-up: importing it in the worker would stall a block

from avatar_forcing_ros.media.audio_stream import StreamResampler


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


class ChunkResampler:
    """Stamped chunks of a stream (any rate) -> audio at `rate_out`, resampled continuously.

    A stream goes on while chunks follow each other: the same rate, the next sequence number,
    and a start time within `max_jump_s` of where the previous chunk ended. Anything else (a
    pause, lost chunks, a new rate, a clock step) starts a new stream at that chunk's own time.
    Output sample n of a stream sounds at the stream's start time + n / rate_out: the
    resampler's look-ahead delays when samples are computed, never when they sound.

    The look-ahead keeps the newest input samples back until the next chunk shows what follows
    them. `add` returns their output anyway, computed as if the stream ended there (as `resample`
    would), because speech may just stop and nothing may follow; the next chunk's output starts
    where the final output ended and so overwrites that provisional tail on the timeline (where
    the tail has already sounded, the timeline counts the overlap late).
    """

    def __init__(self, rate_out: int, max_jump_s: float = 0.002):
        if rate_out <= 0:
            raise ValueError(f"rate_out must be > 0, got {rate_out}")
        self.rate_out = rate_out
        # Stamps from a capture clock wobble a little; following each to the sample would cut a
        # click into the stream every time, so a stream may drift this far from its stamps.
        self.max_jump_s = max_jump_s
        self._resampler: StreamResampler | None = None
        self._rate = 0
        self._sequence = 0                      # of the previous chunk
        self._start = 0.0                       # presentation time of the stream's first sample
        self._in = 0                            # input samples of the stream so far
        self._out = 0                           # final output samples of the stream so far

    def add(self, samples: np.ndarray, rate: int, start: float,
            sequence: int) -> tuple[np.ndarray, float]:
        """Feed one chunk: mono float32 `samples` at `rate` Hz whose first sample sounds at
        `start` (s). Returns output samples at `rate_out` and the time the first one sounds."""
        if not self._continues(rate, start, sequence):
            self._resampler = StreamResampler(rate, self.rate_out)
            self._rate, self._start, self._in, self._out = rate, start, 0, 0
        r = self._resampler
        self._sequence = sequence
        self._in += len(samples)
        final = r.process(samples)
        first = self._start + self._out / self.rate_out
        self._out += len(final)
        # the held-back samples' output, cut to the length resample_poly gives the stream so far
        total = -(-self._in * r.up // r.down)
        tail = r.preview_end()[:total - self._out]
        return np.concatenate([final, tail]), first

    def _continues(self, rate: int, start: float, sequence: int) -> bool:
        return (self._resampler is not None and rate == self._rate and sequence == self._sequence + 1
                and abs(start - (self._start + self._in / rate)) <= self.max_jump_s)
