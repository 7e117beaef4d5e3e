"""What a browser's speaker plays, on the wall clock: the monitor of the PulseAudio null sink the
browser plays into, recorded with parec in 5 ms reads.

A null sink consumes its input in real time, so its monitor hears each sample when it is played.
Sample n of the recording is mapped to t0 + n / rate, t0 being the earliest start consistent with
every read (a read never comes before its samples were played): at most one read's 5 ms late."""
from __future__ import annotations

import subprocess
import threading
import time

import numpy as np

RATE = 48000
READ_SAMPLES = 240                  # 5 ms of float32 mono


class SinkRecorder:
    """Record ``sink``'s monitor on the PulseAudio server of ``env`` (context manager)."""

    def __init__(self, env: dict[str, str], sink: str) -> None:
        self._cmd = ['parec', f'--device={sink}.monitor', '--format=float32le', f'--rate={RATE}',
                     '--channels=1', '--latency-msec=5', '--raw']
        self._env = env
        self._reads: list[tuple[float, np.ndarray]] = []    # (time.time() after the read, samples)
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> 'SinkRecorder':
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, env=self._env)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._proc.terminate()
        self._proc.wait(10)

    def _read(self) -> None:
        while data := self._proc.stdout.read(4 * READ_SAMPLES):
            self._reads.append((time.time(), np.frombuffer(data, np.float32)))

    def clear(self) -> None:
        """Forget what was recorded so far (e.g. a warm-up)."""
        self._reads = []

    def onsets(self, threshold: float = 0.2, gap_s: float = 0.25) -> list[float]:
        """Wall-clock times (s) at which a sound starts: the first sample above ``threshold``
        after at least ``gap_s`` below it."""
        reads = list(self._reads)
        if not reads:
            return []
        ends = np.cumsum([len(samples) for _, samples in reads])
        t0 = min(t - end / RATE for (t, _), end in zip(reads, ends))
        loud = np.flatnonzero(np.abs(np.concatenate([samples for _, samples in reads])) > threshold)
        starts = loud[np.diff(loud, prepend=-RATE) > gap_s * RATE]
        return [t0 + n / RATE for n in starts]
