"""Audio streams in pieces: file loading, streaming resampling, fixed-size stamped chunks.

ROS-free (NumPy, SciPy, soundfile). Times are integer nanoseconds on whatever clock the caller
uses; sample counts are frames of mono audio.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

_NS_PER_S = 1_000_000_000


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read a WAV/FLAC/OGG/MP3 file (libsndfile) as float32 mono at ``sample_rate`` Hz, shape (frames,).

    Channels are averaged; other rates are resampled with a polyphase filter (exact copy when
    the file already has ``sample_rate``).

    Raises:
        ValueError: unreadable file, empty file, NaN/inf samples (the text names the path),
            bad rate.
    """
    if sample_rate <= 0:
        raise ValueError(f'sample_rate must be > 0, got {sample_rate}')
    if not Path(path).is_file():
        raise ValueError(f'audio file not found: {str(path)!r}')
    try:
        data, file_rate = soundfile.read(str(path), dtype='float32', always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        # libsndfile's own text can mislead (an undecodable MP3 "does not exist"): say what failed
        raise ValueError(f'cannot decode audio file {str(path)!r}: not a WAV, FLAC, OGG or MP3 '
                         f'file that libsndfile reads') from error
    if data.shape[0] == 0:
        raise ValueError(f'audio file {str(path)!r} has no samples')
    mono = data.mean(axis=1, dtype=np.float32)  # (frames,)
    if file_rate != sample_rate:
        g = gcd(int(file_rate), int(sample_rate))
        mono = resample_poly(mono, sample_rate // g, file_rate // g).astype(np.float32)
    # A float file can hold NaN/inf; refused here, they would fail every chunk at publish time.
    # Checked after the mix-down, which can also overflow to inf.
    if not np.isfinite(mono).all():
        raise ValueError(f'audio file {str(path)!r} has NaN or infinite samples')
    return np.ascontiguousarray(mono)


class StreamResampler:
    """Polyphase resampling of a stream fed in arbitrary pieces.

    The concatenated output equals ``scipy.signal.resample_poly`` of the whole stream (same
    filter, zero-padded start) for every output sample produced so far; the price is a look-ahead
    of :attr:`delay` input samples that stay pending until more input arrives.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f'rates must be > 0, got {in_rate} -> {out_rate}')
        g = gcd(int(in_rate), int(out_rate))
        self.up, self.down = out_rate // g, in_rate // g
        # resample_poly's FIR has a half-length of 10 * max(up, down) taps at the up-sampled rate
        half_in = 10 * max(self.up, self.down) // self.up + 2
        self.delay = 0 if self.up == self.down else -(-half_in // self.down) * self.down
        self._history = np.zeros(self.delay, np.float32)
        self._pending = np.zeros(0, np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed (n,) input samples; return the output samples that are now final, float32."""
        samples = np.asarray(samples, np.float32)
        if self.up == self.down:
            return samples.copy()
        self._pending = np.concatenate([self._pending, samples])
        usable = (len(self._pending) - self.delay) // self.down * self.down
        if usable <= 0:
            return np.zeros(0, np.float32)
        window = np.concatenate([self._history, self._pending[:usable + self.delay]])
        resampled = resample_poly(window, self.up, self.down)
        first = self.delay // self.down * self.up
        out = resampled[first:first + usable // self.down * self.up].astype(np.float32)
        self._history = np.concatenate([self._history, self._pending[:usable]])[-self.delay:]
        self._pending = self._pending[usable:]
        return out

    def preview_end(self) -> np.ndarray:
        """The output still held back by the look-ahead, computed as if the stream ended now
        (zeros follow) and running past its end; the stream's state is left as it was."""
        state = self._history, self._pending      # process() rebinds both, never writes into them
        out = self.process(np.zeros(self.delay + self.down, np.float32))
        self._history, self._pending = state
        return out


class ChunkAssembler:
    """Device blocks (any size, device rate) -> fixed-size chunks at the output rate, each with
    the capture time of its first sample.

    Every pushed block carries the capture time of its own first sample; a chunk's stamp is
    interpolated from the block that holds the chunk's first sample (so device-clock drift
    and dropped blocks show in the stamps instead of accumulating).
    """

    def __init__(self, in_rate: int, out_rate: int, chunk_frames: int) -> None:
        if chunk_frames <= 0:
            raise ValueError(f'chunk_frames must be > 0, got {chunk_frames}')
        self.in_rate, self.out_rate, self.chunk_frames = in_rate, out_rate, chunk_frames
        self._resampler = StreamResampler(in_rate, out_rate)
        self._blocks: deque[tuple[int, int]] = deque()  # (first input index, stamp ns)
        self._in_count = 0
        self._out = np.zeros(0, np.float32)
        self._out_start = 0  # output index of self._out[0]

    def push(self, block: np.ndarray, stamp_ns: int) -> list[tuple[np.ndarray, int]]:
        """Add a (n,) mono block captured at ``stamp_ns``; return finished (chunk, stamp_ns)."""
        self._blocks.append((self._in_count, int(stamp_ns)))
        self._in_count += len(block)
        self._out = np.concatenate([self._out, self._resampler.process(block)])
        chunks = []
        while len(self._out) >= self.chunk_frames:
            chunks.append((self._out[:self.chunk_frames].copy(), self._stamp_of(self._out_start)))
            self._out = self._out[self.chunk_frames:]
            self._out_start += self.chunk_frames
        return chunks

    def _stamp_of(self, out_index: int) -> int:
        position = out_index * self.in_rate / self.out_rate  # input sample position
        while len(self._blocks) > 1 and self._blocks[1][0] <= position:
            self._blocks.popleft()
        first_index, stamp_ns = self._blocks[0]
        return stamp_ns + round((position - first_index) * _NS_PER_S / self.in_rate)


class StampSmoother:
    """Smooths the per-block capture times a driver reports (ALSA's pulse plugin jitters by
    about a block) into a steady timeline that still follows the device clock.

    Each block's time is predicted from the previous one plus its duration and nudged by a
    fraction ``gain`` of the measured error; an error larger than ``reset_ns`` (a gap, lost
    blocks, a clock step forward), or a block the caller marks as following lost audio, restarts
    the timeline from the measurement; a measurement that far behind is approached with the same
    gain, never stamping a block before the previous one. (PulseAudio's ALSA plugin, for one, jitters by up to ~10 ms,
    and starts a 16 kHz stream with a ~0.4 s backlog whose reported capture times then advance
    by two blocks per block while it drops audio to catch up: those are followed, not smoothed.)
    """

    def __init__(self, sample_rate: float, gain: float = 0.1,
                 reset_ns: int = 15_000_000) -> None:
        self.sample_rate, self.gain, self.reset_ns = sample_rate, gain, reset_ns
        self._next_ns: float | None = None  # predicted time of the next block's first sample
        self._last_ns = 0.0                 # the stamp given to the previous block

    def update(self, measured_ns: int, frames: int, after_gap: bool = False) -> int:
        """Capture time to use for a block of ``frames`` samples measured at ``measured_ns``."""
        duration_ns = frames * _NS_PER_S / self.sample_rate
        error = None if self._next_ns is None else measured_ns - self._next_ns
        if after_gap or error is None or error > self.reset_ns:
            stamp = float(measured_ns)
        elif error < -self.reset_ns:
            # Earlier than the previous block's end: audio of one stream cannot overlap, so this
            # is the driver's jitter or a slow clock. Ease towards it without going back past
            # the previous stamp (a restart there repeated or reversed the chunk stamps).
            stamp = max(self._next_ns + self.gain * error, self._last_ns + duration_ns / 2)
        else:
            stamp = self._next_ns + self.gain * error
        self._last_ns = stamp
        self._next_ns = stamp + duration_ns
        return round(stamp)


def clock_offset_ns(reference_ns: Callable[[], int], stream_s: Callable[[], float],
                    reads: int = 16) -> int:
    """Offset that maps a stream clock (seconds) onto a reference clock (ns): reference =
    stream * 1e9 + offset. Each read brackets the stream clock between two reference reads; the
    narrowest bracket wins, so a thread preempted mid-read (8 ms seen on a loaded 2-core
    machine) does not shift every stamp of the session."""
    best_width, best_offset = None, 0
    for _ in range(reads):
        before = reference_ns()
        stream = stream_s()
        after = reference_ns()
        if best_width is None or after - before < best_width:
            best_width = after - before
            best_offset = (before + after) // 2 - round(stream * _NS_PER_S)
    return best_offset


def block_capture_ns(adc_time: float, callback_time: float, frames: int, sample_rate: float,
                     offset_ns: int, now_ns: Callable[[], int]) -> int:
    """Reference-clock capture time of a device block's first sample from the times a PortAudio
    callback reports (stream clock, seconds; 0 = not reported by the driver): the ADC time;
    else the callback time minus the block's duration; else ``now_ns()`` minus the duration."""
    duration_ns = round(frames * _NS_PER_S / sample_rate)
    if adc_time > 0:
        return offset_ns + round(adc_time * _NS_PER_S)
    if callback_time > 0:
        return offset_ns + round(callback_time * _NS_PER_S) - duration_ns
    return now_ns() - duration_ns
