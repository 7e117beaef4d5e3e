"""Presentation timing for the display and the speaker: both show/play media at the same
presentation time, `stamp + presentation_delay` (wall clock), so picture and sound stay in sync
whatever the transport delay of each path (as long as it is below the delay).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

# The one delay of both: display and audio_playback declare it through one shared declaration
# (nodes/node_support.declare_presentation_delay) and read one `/**` entry of the parameter file
# (tools/node_plan.check_parameter_file refuses a node-specific value).
PRESENTATION_DELAY_PARAMETER = "presentation_delay_ms"
DEFAULT_PRESENTATION_DELAY_MS = 1000.0


@dataclass
class PresentationCounters:
    received: int = 0
    shown: int = 0
    late: int = 0       # shown more than `late_after_s` after its presentation time
    skipped: int = 0    # never shown: a newer frame was already due
    overflow: int = 0   # never shown: discarded unshown, the schedule was full


class FrameSchedule(Generic[T]):
    """Frames waiting for their presentation time (thread-safe: ROS callback in, display out).

    At most `capacity` frames wait; when full, the oldest is discarded (counted in `overflow`).
    """

    def __init__(self, late_after_s: float = 0.02, capacity: int = 100):
        self._frames: deque[tuple[float, T]] = deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._late_after = late_after_s
        self.counters = PresentationCounters()

    @classmethod
    def for_delay(cls, delay_s: float, max_fps: float, late_after_s: float = 0.02) -> FrameSchedule[T]:
        """A schedule that holds every frame of a stream of up to `max_fps` until it is due
        `delay_s` after its stamp, plus a second of frames for bursts (after a stall)."""
        return cls(late_after_s, math.ceil((delay_s + 1.0) * max_fps))

    def push(self, frame: T, presentation_time: float) -> None:
        with self._lock:
            self.counters.received += 1
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.counters.overflow += 1
            self._frames.append((presentation_time, frame))

    def next_time(self) -> float | None:
        """Presentation time of the oldest waiting frame, or None."""
        with self._lock:
            return self._frames[0][0] if self._frames else None

    def pop_due(self, now: float) -> T | None:
        """The newest frame whose presentation time has come (older due ones are skipped)."""
        with self._lock:
            due = None
            while self._frames and self._frames[0][0] <= now:
                if due is not None:
                    self.counters.skipped += 1
                due = self._frames.popleft()
            if due is None:
                return None
            self.counters.shown += 1
            self.counters.late += int(now - due[0] > self._late_after)
            return due[1]


class PlaybackTimeline:
    """Audio placed on the wall clock by presentation time, read by an output stream callback.

    `add` puts a chunk's first sample at its presentation time; `read(n, t)` returns the n samples
    that should sound from wall time t on (silence where nothing was scheduled). Samples whose
    time has passed when they arrive are dropped and counted (`late_samples`), and so are chunks
    that would end more than `max_seconds` ahead of what was read (`early_samples`: a stamp in
    the far future must not grow the buffer without bound). Positions are
    counted in samples from the first chunk's presentation time, so chunks stamped back to back
    join without gaps or clicks.

    Reads are continuous: each one goes on where the previous one ended, as long as that is
    within `resync_s` of the time the caller gives. The time a callback computes from its
    driver's DAC estimate jitters by a few samples, and under load (a Python callback waiting for
    the GIL) by more; following it sample-exactly would cut gaps and repeats into the sound.
    Beyond `resync_s` (an underrun, a clock step, slow drift) the read jumps to the given time:
    counted in `resyncs`, and the timeline samples jumped over in `skipped_samples`.
    """

    def __init__(self, sample_rate: int, max_seconds: float = 10.0, resync_s: float = 0.01):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.sample_rate = sample_rate
        self._lock = threading.Lock()
        self._anchor: float | None = None          # wall time of sample position 0
        self._buffer = np.zeros(0, np.float32)     # samples from position `_start` on
        self._start = 0                            # position of _buffer[0]
        self._cursor: int | None = None            # position the next read starts at
        self.max_seconds = max_seconds
        self._max = int(max_seconds * sample_rate)
        self._resync = round(resync_s * sample_rate)
        self.late_samples = 0
        self.early_samples = 0                     # dropped: scheduled beyond max_seconds ahead
        self.played_samples = 0                    # samples handed out from the scheduled range
                                                   # (gaps between chunks included)
        self.skipped_samples = 0                   # timeline samples a resync jumped over
        self.resyncs = 0

    def add(self, samples: np.ndarray, presentation_time: float) -> None:
        """Schedule mono float32 samples (at `sample_rate`) to start at `presentation_time` (s)."""
        with self._lock:
            if self._anchor is None:
                self._anchor = presentation_time
            pos = round((presentation_time - self._anchor) * self.sample_rate)
            if pos < self._start:                  # partly or wholly in the past
                cut = min(len(samples), self._start - pos)
                self.late_samples += cut
                samples, pos = samples[cut:], pos + cut
            end = pos + len(samples) - self._start
            if end > self._max:
                self.early_samples += len(samples)
                return
            if end > len(self._buffer):
                self._buffer = np.concatenate([self._buffer, np.zeros(end - len(self._buffer), np.float32)])
            self._buffer[pos - self._start:end] = samples

    def read(self, frames: int, start_time: float) -> np.ndarray:
        """The `frames` samples due from wall time `start_time` on (see the class: continuous
        within `resync_s`)."""
        out = np.zeros(frames, np.float32)
        with self._lock:
            if self._anchor is None:
                return out
            pos = round((start_time - self._anchor) * self.sample_rate)
            if self._cursor is not None:
                if abs(pos - self._cursor) <= self._resync:
                    pos = self._cursor
                else:
                    self.resyncs += 1
                    self.skipped_samples += max(0, min(pos, self._start + len(self._buffer))
                                                - max(self._cursor, self._start))
            end = pos + frames
            lo, hi = max(pos, self._start), min(end, self._start + len(self._buffer))
            if hi > lo:
                out[lo - pos:hi - pos] = self._buffer[lo - self._start:hi - self._start]
                self.played_samples += hi - lo
            drop = min(len(self._buffer), max(0, end - self._start))   # read, or passed unread
            self._buffer = self._buffer[drop:]
            self._start = max(self._start + drop, end)
            self._cursor = end
            return out
