"""Validation of one chunk of interleaved PCM audio (the fields of an AudioChunk), ROS-free.

One rule for every reader of audio chunks: the nodes (through ``conversions``), the evaluation
and the bag export. A chunk that breaks it is refused as a whole; :class:`BadAudioChunk` says
why in a short, value-free ``cause`` that callers count by.
"""
from __future__ import annotations

import numpy as np

# Accepted sample rates (Hz, inclusive): telephone-grade to the highest studio rate. An absurd
# rate (a corrupt uint32) would make consumers resample to gigabytes of samples.
SAMPLE_RATE_RANGE = (1000, 384000)


class BadAudioChunk(ValueError):
    """A chunk whose fields are inconsistent; the text names the field and its value."""

    def __init__(self, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.cause = cause


def interleaved_frames(samples: np.ndarray, sample_rate: int, channels: int) -> np.ndarray:
    """(frames, channels) float32 view of interleaved ``samples`` after checking the chunk.

    Raises:
        BadAudioChunk: sample_rate outside :data:`SAMPLE_RATE_RANGE`, channels 0, a sample count
            that is not a multiple of channels, or NaN/inf samples.
    """
    low, high = SAMPLE_RATE_RANGE
    if not low <= sample_rate <= high:
        raise BadAudioChunk(f'sample rate outside {low}..{high} Hz',
                            f'sample_rate {sample_rate} Hz is outside {low}..{high} Hz')
    if channels == 0:
        raise BadAudioChunk('0 channels', 'channels is 0')
    samples = np.asarray(samples, np.float32).reshape(-1)
    if samples.size % channels:
        raise BadAudioChunk('sample count not a multiple of channels',
                            f'samples has {samples.size} values, not a multiple of '
                            f'channels={channels}')
    if not np.isfinite(samples).all():
        raise BadAudioChunk('NaN or inf samples', 'samples contains NaN or inf')
    return samples.reshape(-1, channels)
