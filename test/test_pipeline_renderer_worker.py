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
