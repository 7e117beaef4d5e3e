"""The session clock: one media timeline shared by every input and output (DESIGN.md section 3).

Times are seconds on the ROS clock (system time by default). The session starts at media time
``t0``; frame n of the avatar stream represents media time ``t0 + n / fps``, and an audio sample
stamped ``s`` sits at index ``round((s - t0) * sample_rate)`` of the session's audio timeline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionClock:
    """Maps between media times (s), frame indices and audio sample indices."""

    t0: float                  # media time of frame 0 (s)
    fps: int = 25              # avatar frames per second
    block_frames: int = 10     # frames per generated block

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.block_frames <= 0:
            raise ValueError(f"fps and block_frames must be positive, got {self.fps}, {self.block_frames}")

    @property
    def frame_period(self) -> float:
        """Seconds between two frames (0.04 s at 25 fps)."""
        return 1.0 / self.fps

    @property
    def block_duration(self) -> float:
        """Seconds of media in one block (0.4 s for 10 frames at 25 fps)."""
        return self.block_frames / self.fps

    def frame_time(self, frame_index: int) -> float:
        """Media time (s) that frame `frame_index` represents."""
        return self.t0 + frame_index / self.fps

    def block_start_time(self, block_index: int) -> float:
        """Media time (s) of the first frame of block `block_index`."""
        return self.frame_time(block_index * self.block_frames)

    def frame_index_at(self, stamp: float) -> int:
        """Index of the frame whose period [t0 + n/fps, t0 + (n+1)/fps) contains `stamp`."""
        return math.floor((stamp - self.t0) * self.fps + 1e-9)

    def nearest_frame_index(self, stamp: float) -> int:
        """Index of the frame whose media time is nearest to `stamp` (camera frames)."""
        return round((stamp - self.t0) * self.fps)

    def sample_index(self, stamp: float, sample_rate: int) -> int:
        """Index on the session's audio timeline of a sample stamped `stamp` (s)."""
        return round((stamp - self.t0) * sample_rate)


def origin_on_ticks(now: int, next_tick: int, latency: int, period: int) -> int:
    """The latest media-time origin <= `now` that puts every frame's publication time (origin +
    n * period + latency) on a tick of a fixed-rate timer whose next tick is at `next_tick`, so
    that no frame waits for a tick. Integers (ns) keep the stamps exact."""
    phase = (next_tick - latency) % period
    return now - (now - phase) % period
