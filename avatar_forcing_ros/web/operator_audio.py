"""The operator's microphone, as received over WebRTC, cut into stamped AudioChunk payloads
(ROS-free).

The generator's time model wants each chunk stamped with the capture time of its first sample.
The browser's capture clock is not visible here, so the capture time of each received frame is
estimated as its arrival time minus its own duration minus the network's one-way delay (half the
round trip aiortc measures from RTCP), then smoothed into a steady timeline that follows the
arrivals (StampSmoother, as for a sound card). Only while the operator talks (push-to-talk held or
the mic open, not muted) are chunks produced: an operator who is not talking is the avatar's "not
speaking" condition, not silence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import av
import numpy as np

from avatar_forcing_ros.media.audio_stream import ChunkAssembler, StampSmoother

_NS_PER_S = 1_000_000_000

ChunkSink = Callable[[np.ndarray, int], None]   # (mono float32 chunk, stamp ns)


@dataclass
class OperatorAudioCounters:
    frames: int = 0          # received from the browser
    chunks: int = 0          # published on avatar/audio
    dropped_muted: int = 0   # received while not talking


def frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """(samples,) float32 in [-1, 1] of a decoded frame (s16 or float, packed or planar)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = data.reshape(channels, -1).T
    else:
        data = data.reshape(-1, channels)
    if data.dtype == np.int16:
        data = data.astype(np.float32) / 32768.0
    return data.mean(axis=1, dtype=np.float32)


class OperatorAudio:
    """Decoded frames in (any rate), fixed chunks at ``sample_rate`` out while talking."""

    def __init__(self, sink: ChunkSink, sample_rate: int = 16000, chunk_ms: float = 20.0) -> None:
        self._sink = sink
        self.sample_rate = sample_rate
        self._chunk_frames = round(sample_rate * chunk_ms / 1000)
        self._assembler: ChunkAssembler | None = None
        self._smoother: StampSmoother | None = None
        self.talking = False
        self.counters = OperatorAudioCounters()
        self.last_lag_ns = 0   # arrival minus stamp of the newest chunk (what the stamp assumed)

    def set_talking(self, talking: bool) -> None:
        """Start or stop sending; each talk spurt starts a fresh timeline."""
        if talking and not self.talking:
            self._assembler = self._smoother = None
        self.talking = talking

    def push(self, frame: av.AudioFrame, arrival_ns: int, one_way_ns: int) -> None:
        self.counters.frames += 1
        if not self.talking:
            self.counters.dropped_muted += 1
            return
        samples = frame_to_mono(frame)
        rate = int(frame.sample_rate)
        if self._assembler is None or self._assembler.in_rate != rate:
            self._assembler = ChunkAssembler(rate, self.sample_rate, self._chunk_frames)
            self._smoother = StampSmoother(rate, reset_ns=60_000_000)
        measured = arrival_ns - one_way_ns - round(len(samples) * _NS_PER_S / rate)
        stamp = self._smoother.update(measured, len(samples))
        for chunk, chunk_stamp in self._assembler.push(samples, stamp):
            self._sink(chunk, chunk_stamp)
            self.counters.chunks += 1
            self.last_lag_ns = arrival_ns - chunk_stamp
