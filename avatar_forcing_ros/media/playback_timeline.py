"""A clip played in real time as fixed-size chunks on a steady timeline (ROS-free).

Chunk i's first sample is presented at ``start + frames_sent / rate``: the stamp is that time on
the caller's clock (integer ns, e.g. ROS time) and the chunk is due when the same time has come on
``time.monotonic()``. Stamps therefore never carry the jitter of the caller's wake-ups, and a
looping clip wraps around inside a chunk so that chunks stay whole and on their ticks.

Shared by the audio_file_player node and ``avatar-forcing-ctl say|play``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NS_PER_S = 1_000_000_000


@dataclass
class PlaybackTimeline:
    samples: np.ndarray   # (frames,) float32 mono at sample_rate
    sample_rate: int      # Hz
    chunk_frames: int     # frames per chunk (the last one of a clip that does not loop may be shorter)
    start_ns: int         # caller-clock time of the first sample (ns)
    start_mono: float     # time.monotonic() at the first sample (s)
    loop: bool = False    # restart the clip when it ends (may change while playing)
    position: int = 0     # next sample of the clip to send
    frames_sent: int = 0  # frames sent since start, across loops: the timeline

    @property
    def finished(self) -> bool:
        """Every sample has been sent and the clip does not loop."""
        return not self.loop and self.position >= len(self.samples)

    def next_due_mono(self) -> float:
        """time.monotonic() at which the next chunk is due."""
        return self.start_mono + self.frames_sent / self.sample_rate

    def due_chunks(self, now_mono: float, tolerance_s: float = 0.0) -> list[tuple[np.ndarray, int]]:
        """The chunks due by ``now_mono`` (+ ``tolerance_s``: a wake-up that early still counts),
        each with the stamp of its first sample (ns), in order; empty when none is due or finished."""
        chunks = []
        while not self.finished and now_mono + tolerance_s >= self.next_due_mono():
            if self.position >= len(self.samples):  # looping: start over
                self.position = 0
            end = self.position + self.chunk_frames
            chunk = self.samples[self.position:end]
            self.position += len(chunk)
            if self.loop and len(chunk) < self.chunk_frames:  # wrap: whole chunks stay on the ticks
                self.position = min(end - len(self.samples), len(self.samples))
                chunk = np.concatenate([chunk, self.samples[:self.position]])
            chunks.append((chunk, self.start_ns + self.frames_sent * _NS_PER_S // self.sample_rate))
            self.frames_sent += len(chunk)
        return chunks
