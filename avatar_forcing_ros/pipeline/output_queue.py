"""Generated frames waiting for their publication tick, with hold frames when the queue runs dry.

The generator's timer asks for frame n at every tick. If frame n has been generated it is
published; otherwise the last published latent is repeated as a *hold* frame (marked and
counted) so the output rate never changes. Generated frames whose tick has already passed are
dropped on arrival and counted as late.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..backends.base import MotionBlock


@dataclass(frozen=True)
class OutputFrame:
    """One frame ready to publish."""

    frame_index: int
    block_index: int
    latent: np.ndarray         # (latent_dim,) float32
    nfe: int
    guidance_branches: int
    is_hold: bool


class OutputFrameQueue:
    """Thread-safe: the worker pushes blocks, the timer pops frames in order."""

    def __init__(self, latent_dim: int, block_frames: int, initial_latent: np.ndarray | None = None):
        if latent_dim <= 0 or block_frames <= 0:
            raise ValueError("latent_dim and block_frames must be positive")
        self._block_frames = block_frames
        self._lock = threading.Lock()
        self._frames: dict[int, OutputFrame] = {}
        self._next = 0
        # Held until the first frame is generated: the neutral latent (zeros unless given).
        self._last = OutputFrame(-1, -1, np.zeros(latent_dim, np.float32) if initial_latent is None
                                 else np.asarray(initial_latent, np.float32), 0, 0, True)
        self.frames_published = 0
        self.hold_frames = 0
        self.late_frames = 0

    @property
    def next_frame(self) -> int:
        """Index of the next frame the timer will publish."""
        with self._lock:
            return self._next

    def depth(self) -> int:
        """Generated frames waiting (frames)."""
        with self._lock:
            return len(self._frames)

    def push_block(self, block: MotionBlock) -> int:
        """Queue a generated block; returns how many of its frames were already late (dropped)."""
        latents = np.asarray(block.latents, np.float32)
        late = 0
        with self._lock:
            for i, latent in enumerate(latents):
                n = block.first_frame + i
                if n < self._next:
                    late += 1
                    continue
                self._frames[n] = OutputFrame(n, block.block_index, latent, block.nfe,
                                              block.guidance_branches, False)
            self.late_frames += late
        return late

    def pop(self) -> OutputFrame:
        """The next frame in order: generated if available, else a hold of the last one."""
        with self._lock:
            n = self._next
            self._next += 1
            frame = self._frames.pop(n, None)
            self.frames_published += 1
            if frame is None:
                self.hold_frames += 1
                last = self._last
                frame = OutputFrame(n, n // self._block_frames, last.latent, last.nfe,
                                    last.guidance_branches, True)
            self._last = frame
            return frame
