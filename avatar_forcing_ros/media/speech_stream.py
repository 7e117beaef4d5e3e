"""One utterance on its way from a speech engine to real-time audio chunks, ROS-free.

The synthesis thread appends audio (:meth:`Utterance.add`, any rate: resampled as one stream
to the output rate); the publishing tick takes the chunks that are due (:meth:`due_chunks`).
Chunk i's stamp is the presentation time of its first sample, ``start + frames / rate`` on a
steady timeline, as the audio_file_player stamps a file (media/playback_timeline.py). The
timeline starts when :data:`START_S` of audio is ready (or all of it), so that an engine that
delivers in bursts does not leave the stream short after its first chunk; when synthesis still
falls behind real time, the stream pauses and the timeline starts again the same way (the gap is
real silence, and the stamps say so). A publishing tick more than :data:`MAX_LATE_S` late
restarts the timeline at now too, instead of sending a burst of chunks whose stamps lie behind
frames the generator has already made.
"""
from __future__ import annotations

import threading
import numpy as np

from avatar_forcing_ros.media.audio_stream import StreamResampler

_NS_PER_S = 1_000_000_000
START_S = 0.2     # audio ready before a timeline starts (espeak-ng writes ~0.1 s blocks)
MAX_LATE_S = 0.25  # a tick this late (a starved process) restarts the timeline at now: stale
                   # stamps would be of frames the generator has already made without the audio


class Utterance:
    def __init__(self, text: str, voice: str, sample_rate: int, chunk_frames: int) -> None:
        self.text, self.voice = text, voice
        self.sample_rate, self.chunk_frames = sample_rate, chunk_frames
        self.cancelled = threading.Event()   # set: the synthesis stops, nothing more is sent
        self.reason = ''                     # why it ended early ('' = it did not)
        self._lock = threading.Lock()
        self._pending = np.zeros(0, np.float32)   # synthesised, not yet sent (output rate)
        self._resampler: StreamResampler | None = None
        self._in_rate = 0
        self._in_count = self._out_count = 0     # samples into / out of the current resampler
        self._synthesised = False
        self.frames_sent = 0
        self._segment_start: tuple[int, float] | None = None   # (stamp ns, monotonic s) of ...
        self._segment_frames = 0                               # ... this many frames ago
        self._resume_after: tuple[int, float] = (0, 0.0)       # end of the audio sent so far

    # ------------------------------------------------------------ synthesis thread

    def add(self, samples: np.ndarray, rate: int) -> None:
        """Append synthesised float32 mono ``samples`` at ``rate`` Hz."""
        if self._resampler is None or rate != self._in_rate:
            self._flush_resampler()
            self._in_rate = rate
            self._resampler = None if rate == self.sample_rate else StreamResampler(rate, self.sample_rate)
            self._in_count = self._out_count = 0
        out = samples if self._resampler is None else self._resampler.process(samples)
        self._in_count += len(samples)
        self._out_count += len(out)
        self._append(out)

    def finish(self) -> None:
        """Synthesis is over: the rest of the audio may go out as a last, shorter chunk."""
        self._flush_resampler()
        with self._lock:
            self._synthesised = True

    def _flush_resampler(self) -> None:
        if self._resampler is not None:   # the held-back end, cut to the stream's exact length
            total = -(-self._in_count * self.sample_rate // self._in_rate)
            self._append(self._resampler.preview_end()[:max(0, total - self._out_count)])
            self._resampler = None

    def _append(self, samples: np.ndarray) -> None:
        with self._lock:
            if not self.cancelled.is_set():
                self._pending = np.concatenate([self._pending, np.asarray(samples, np.float32)])

    # ------------------------------------------------------------ publishing tick

    def cancel(self, reason: str) -> None:
        """Stop at once: drop what was not sent and stop the synthesis."""
        with self._lock:
            self.cancelled.set()
            self.reason = reason
            self._pending = np.zeros(0, np.float32)

    @property
    def finished(self) -> bool:
        """Everything synthesised was sent (or it was cancelled)."""
        with self._lock:
            return self.cancelled.is_set() or (self._synthesised and not len(self._pending))

    @property
    def synthesised(self) -> bool:
        """The engine has delivered all of the speech."""
        with self._lock:
            return self._synthesised

    @property
    def sent_s(self) -> float:
        return self.frames_sent / self.sample_rate

    def buffered_s(self) -> float:
        with self._lock:
            return len(self._pending) / self.sample_rate

    def end(self) -> tuple[int, float]:
        """(stamp ns, monotonic s) at which the audio sent so far ends."""
        with self._lock:
            return self._segment_end() if self._segment_start is not None else self._resume_after

    def start_after(self, end: tuple[int, float]) -> None:
        """Start no earlier than ``end`` (the end of the speech before this one)."""
        with self._lock:
            self._resume_after = end

    def _segment_end(self) -> tuple[int, float]:
        start_ns, start_mono = self._segment_start
        return (start_ns + self._segment_frames * _NS_PER_S // self.sample_rate,
                start_mono + self._segment_frames / self.sample_rate)

    def due_chunks(self, now_ns: int, now_mono: float, tolerance_s: float = 0.0
                   ) -> list[tuple[np.ndarray, int]]:
        """The chunks due by ``now_mono`` with their stamps (ns on the caller's clock)."""
        chunks = []
        with self._lock:
            while not self.cancelled.is_set():
                needed = self.chunk_frames if self._segment_start else max(
                    self.chunk_frames, round(START_S * self.sample_rate))
                ready = len(self._pending) >= needed or (self._synthesised and len(self._pending))
                if not ready:
                    if self._segment_start is not None:   # fell behind: restart when audio comes,
                        self._resume_after = self._segment_end()   # not before the sent audio ends
                        self._segment_start = None
                    break
                if self._segment_start is None:
                    after_ns, after_mono = self._resume_after
                    self._segment_start = (max(now_ns, after_ns), max(now_mono, after_mono))
                    self._segment_frames = 0
                start_ns, start_mono = self._segment_start
                due_mono = start_mono + self._segment_frames / self.sample_rate
                if now_mono + tolerance_s < due_mono:
                    break
                if now_mono - due_mono > MAX_LATE_S:   # a starved process: start again from now
                    self._segment_start = (now_ns, now_mono)
                    self._segment_frames = 0
                    start_ns = now_ns
                chunk = self._pending[:self.chunk_frames]
                self._pending = self._pending[len(chunk):]
                chunks.append((chunk, start_ns + self._segment_frames * _NS_PER_S // self.sample_rate))
                self._segment_frames += len(chunk)
                self.frames_sent += len(chunk)
        return chunks
