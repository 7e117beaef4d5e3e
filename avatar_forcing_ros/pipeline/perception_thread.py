"""Camera perception on its own thread, so that face detection never delays a block.

Perception (about 10 ms a frame with MediaPipe, which releases the GIL while it runs; for the
neural backend also the motion encoder, seconds a 512 px frame on a CPU) used to run in the
generator's worker just before a block was decided, so a block whose last camera frame arrived
late started late. Here only the newest camera frame waits (a one-slot queue: a frame replaced
before it was perceived is counted), and a frame whose avatar frame index was already perceived
is skipped too (a camera faster than the avatar's frame rate). So a perception slower than the
camera works on the newest frame it can instead of queueing behind.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .bounded_queue import BoundedQueue


@dataclass(frozen=True)
class CameraFrame:
    rgb: np.ndarray       # (H, W, 3) uint8
    stamp: float          # capture time (s)
    frame_index: int      # the avatar frame nearest to the capture time


class PerceptionThread:
    """Calls `perceive(frame)` on its own thread for the newest submitted camera frame."""

    def __init__(self, perceive: Callable[[CameraFrame], None]):
        self._perceive = perceive
        self._mailbox: BoundedQueue[CameraFrame] = BoundedQueue(1)
        self._last_index = -1
        self._repeated = 0
        self._thread = threading.Thread(target=self._run, name="generator-perception", daemon=True)

    @property
    def skipped(self) -> int:
        """Frames never perceived: replaced by a newer one, or of an already perceived index."""
        return self._mailbox.dropped + self._repeated

    def start(self) -> None:
        self._thread.start()

    def submit(self, frame: CameraFrame) -> None:
        """Non-blocking; a frame still waiting is replaced."""
        self._mailbox.put(frame)

    def stop(self, timeout: float = 5.0) -> None:
        self._mailbox.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            frames = self._mailbox.get_batch(1, timeout=0.5)
            if not frames:
                if self._mailbox.closed:
                    return
                continue
            frame = frames[0]
            if frame.frame_index <= self._last_index:
                self._repeated += 1
                continue
            self._last_index = frame.frame_index
            self._perceive(frame)
