"""Per-video-frame audio energy from chunks placed on the session timeline by sample index.

Frame n of a stream at ``fps`` covers samples [n * spf, (n + 1) * spf) with
``spf = sample_rate / fps``. Chunks may arrive in any size and need not align with frames; each
sample's square is added to its frame. A frame no sample of which ever arrived is *absent*
(``rms`` returns None), which the behaviour rules treat as the null condition; a frame with
quiet samples is present and quiet.
"""
from __future__ import annotations

import numpy as np


class FrameEnergy:
    """Accumulates sum of squares and sample counts per frame index."""

    def __init__(self, sample_rate: int, fps: int):
        if sample_rate <= 0 or fps <= 0 or sample_rate % fps:
            raise ValueError(f"sample_rate ({sample_rate}) must be a positive multiple of fps ({fps})")
        self.samples_per_frame = sample_rate // fps
        self._energy: dict[int, float] = {}
        self._count: dict[int, int] = {}

    def push(self, samples: np.ndarray, start_sample: int) -> None:
        """Add mono samples (float, [-1, 1]) whose first sample has index `start_sample` >= 0."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        if start_sample < 0:
            raise ValueError(f"start_sample must be >= 0, got {start_sample}")
        if samples.size == 0:
            return
        frames = (start_sample + np.arange(samples.size)) // self.samples_per_frame
        first = int(frames[0])
        energy = np.bincount(frames - first, weights=np.nan_to_num(samples) ** 2)
        count = np.bincount(frames - first)
        for offset in np.flatnonzero(count):
            frame = first + int(offset)
            self._energy[frame] = self._energy.get(frame, 0.0) + float(energy[offset])
            self._count[frame] = self._count.get(frame, 0) + int(count[offset])

    def rms(self, frame: int) -> float | None:
        """Root mean square of the frame's samples that arrived, or None if none did."""
        count = self._count.get(frame)
        if not count:
            return None
        return float(np.sqrt(self._energy[frame] / count))

    def level_db(self, frame: int) -> float | None:
        """RMS in dB relative to full scale (floored at -120 dB), or None when absent."""
        rms = self.rms(frame)
        return None if rms is None else 20.0 * float(np.log10(max(rms, 1e-6)))

    def forget_before(self, frame: int) -> None:
        """Drop frames older than `frame` (bounded memory in long sessions)."""
        for old in [f for f in self._count if f < frame]:
            del self._count[old], self._energy[old]

    def clear(self) -> None:
        self._energy.clear()
        self._count.clear()
