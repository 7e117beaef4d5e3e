"""The renderer's ROS-free decoding loop: the latent check on arrival and the loop, which loses
only the frames that fail and never stops on an exception."""
import threading

import numpy as np
import pytest

from avatar_forcing_ros.pipeline.bounded_queue import BoundedQueue
from avatar_forcing_ros.pipeline.render_worker import PendingLatent, RenderWorker, check_latent

DIM = 3


@pytest.mark.parametrize("latent, message", [
    ([0.0, float("nan"), 0.0], "NaN or infinity"),
    ([0.0, float("inf"), 0.0], "NaN or infinity"),
    ([0.0, 0.0], r"shape \(2,\), expected a vector of 3 values"),
    ([], r"shape \(0,\)"),
])
def test_check_latent_rejects_non_finite_and_wrong_length(latent, message):
    with pytest.raises(ValueError, match=message):
        check_latent(np.asarray(latent, np.float32), DIM)


def test_check_latent_accepts_a_finite_vector_of_the_right_length():
    check_latent(np.zeros(DIM, np.float32), DIM)


class _Renderer:
    """(N, DIM) latents -> N images of constant value latent[0]; raises like real renderers do."""

    def __init__(self):
        self.transient_left = 1                      # one CUDA-like failure of a whole batch

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        if latents.shape[1] != DIM:
            raise ValueError(f"expected (N, {DIM}) latents, got {latents.shape}")
        if 30 in latents[:, 0] and self.transient_left:
            self.transient_left -= 1
            raise RuntimeError("CUDA out of memory")
        if 40 in latents[:, 0]:
            raise RuntimeError("renderer bug")
        return np.repeat(latents[:, :1, None, None], 4, axis=1).repeat(4, axis=2).repeat(3, axis=3)


def test_worker_loses_only_failing_frames_and_keeps_running():
    queue: BoundedQueue[PendingLatent] = BoundedQueue(100)
    values = [10, 11, 20, 30, 31, 40, 41, 50, 99]    # 11: wrong length, 50: cannot be published
    for value in values:
        length = 2 if value == 11 else DIM
        queue.put(PendingLatent(np.full(length, value, np.float32), value, 0.0))
    published, errors = [], []

    def publish(image: np.ndarray, header: int) -> None:
        if header == 50:
            raise ValueError("cannot convert the image")
        published.append((header, int(image[0, 0, 0])))
        if header == 99:                             # the last frame: let the loop end
            queue.close()

    worker = RenderWorker(queue, _Renderer(), publish, errors.append, max_batch=2, period_s=0.04)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(10.0)
    stuck = thread.is_alive()
    queue.close()
    assert not stuck, "the worker did not reach the last frame"
    # batches [10, 11] [20, 30] [31, 40] [41, 50] [99]: each failure costs its own frame only;
    # the transient failure of [20, 30] loses nothing (rendered again one by one)
    assert published == [(v, v) for v in (10, 20, 30, 31, 41, 99)]
    assert worker.failed == 3
    assert [type(e) for e in errors] == [ValueError, RuntimeError, ValueError]
    assert worker.late == len(values)                # received at monotonic time 0: all waited


class _SlowRenderer:
    """Renders constant images and advances a fake clock by `frame_s` per frame (no real waiting)."""

    def __init__(self, frame_s: float):
        self.frame_s, self.now = frame_s, 100.0

    def clock(self) -> float:
        return self.now

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        self.now += self.frame_s * len(latents)
        return np.repeat(latents[:, :1, None, None], 4, axis=1).repeat(4, axis=2).repeat(3, axis=3)


def _run_to(last: int, renderer: _SlowRenderer, count: int) -> tuple[list[int], RenderWorker]:
    """Queue latents 0..count-1 at once, run the worker until it publishes `last`."""
    queue: BoundedQueue[PendingLatent] = BoundedQueue(100)
    for value in range(count):
        queue.put(PendingLatent(np.full(DIM, value, np.float32), value, renderer.now))
    published = []

    def publish(image: np.ndarray, header: int) -> None:
        published.append(header)
        if header == last:
            queue.close()

    worker = RenderWorker(queue, renderer, publish, lambda e: None, max_batch=8, period_s=0.04,
                          clock=renderer.clock)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    thread.join(10.0)
    queue.close()
    assert not thread.is_alive()
    return published, worker


def test_a_renderer_slower_than_the_rate_renders_the_newest_and_counts_the_skipped():
    # 0.1 s per frame at 25 fps: after the first batch (measured), only the newest is rendered
    published, worker = _run_to(29, _SlowRenderer(0.1), 30)
    assert published == [0, 1, 2, 3, 4, 5, 6, 7, 29]
    assert worker.skipped == 21 and worker.behind


def test_a_renderer_within_the_rate_renders_every_latent_in_order():
    published, worker = _run_to(29, _SlowRenderer(0.004), 30)
    assert published == list(range(30))
    assert worker.skipped == 0 and not worker.behind
