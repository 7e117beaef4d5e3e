"""The renderer's decoding loop, ROS-free: latents checked on arrival, rendered in batches,
published one by one; a failure costs only the frame that fails (nodes/renderer_node.py runs it).
A renderer slower than the frame rate renders the newest latent each time it is free and counts
the older ones it skipped (rendering them would only make every later frame later)."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .bounded_queue import BoundedQueue


@dataclass(frozen=True)
class PendingLatent:
    """A MotionLatent waiting to be rendered."""

    latent: np.ndarray
    header: object        # std_msgs/Header of the MotionLatent (stamp + frame_id kept as is)
    received: float       # time.monotonic() at reception


def check_latent(latent: np.ndarray, dim: int) -> None:
    """ValueError unless `latent` is a finite vector of `dim` values."""
    if latent.shape != (dim,):
        raise ValueError(f"latent of shape {latent.shape}, expected a vector of {dim} values")
    if not np.all(np.isfinite(latent)):
        raise ValueError("latent contains NaN or infinity")


class RenderWorker:
    """The decoding loop (ROS-free, run on the node's worker thread): batches of waiting latents
    -> `render` -> `publish(image, header)`, until the queue is closed.

    While the measured render time per frame (a moving average) is within one frame period, the
    oldest waiting latents are rendered in batches of at most `max_batch`, none skipped. Beyond it
    (e.g. the neural decoder on a CPU), each time the worker is free it takes every waiting latent,
    renders only the newest and counts the others in `skipped`.

    A batch the renderer fails on is rendered again latent by latent, so one bad latent costs only
    its own frame. A frame that still fails to render, or fails to publish, is counted in `failed`
    and handed to `on_error`; the loop goes on, because a dead worker would leave the node alive
    and silent.
    """

    def __init__(self, queue: BoundedQueue[PendingLatent], render: Callable[[np.ndarray], np.ndarray],
                 publish: Callable[[np.ndarray, object], None], on_error: Callable[[Exception], None],
                 max_batch: int, period_s: float, clock: Callable[[], float] = time.monotonic):
        self._queue, self._render, self._publish, self._on_error = queue, render, publish, on_error
        self._max_batch, self._period, self._clock = max_batch, period_s, clock
        self.late = 0        # latents that waited longer than one frame period
        self.failed = 0      # frames lost to an exception in render or publish
        self.skipped = 0     # latents passed over for a newer one (rendering slower than the rate)
        self.frame_s = 0.0   # render seconds per frame, moving average (0 = nothing rendered yet)

    @property
    def behind(self) -> bool:
        """Whether rendering is slower than the frame rate (then only the newest is rendered)."""
        return self.frame_s > self._period

    def run(self) -> None:
        while not self._queue.closed:
            behind = self.behind
            batch = self._queue.get_batch(sys.maxsize if behind else self._max_batch, timeout=0.1)
            if not batch:
                continue
            if behind:
                self.skipped += len(batch) - 1
                batch = batch[-1:]
            start = self._clock()
            self.late += sum(start - item.received > self._period for item in batch)
            images = self._render_each(batch)
            per_frame = (self._clock() - start) / len(batch)
            self.frame_s = per_frame if self.frame_s == 0.0 else 0.7 * self.frame_s + 0.3 * per_frame
            for item, image in zip(batch, images):
                if image is None:
                    continue
                try:
                    self._publish(image, item.header)
                except Exception as error:   # one frame lost, never the thread
                    self._fail(error)

    def _render_each(self, batch: list[PendingLatent]) -> list[np.ndarray | None]:
        """One image per latent of `batch`; None where rendering failed (counted)."""
        try:
            return list(self._render(np.stack([item.latent for item in batch])))
        except Exception as error:   # one frame lost, never the thread
            if len(batch) == 1:
                self._fail(error)
                return [None]
        return [image for item in batch for image in self._render_each([item])]

    def _fail(self, error: Exception) -> None:
        self.failed += 1
        self._on_error(error)
