"""Put motion series on one uniform media-time grid (the avatar frame rate) by header stamp."""
from __future__ import annotations

import numpy as np

from ..session import MotionSeries
from .stats import resample


def common_grid(first_ns: int, last_ns: int, fps: float) -> np.ndarray:
    """Uniform (T,) int64 grid of stamps from ``first_ns`` to at most ``last_ns``."""
    step = 1e9 / fps
    count = int(np.floor((last_ns - first_ns) / step)) + 1
    return first_ns + np.round(np.arange(max(count, 0)) * step).astype(np.int64)


def aligned_pair(user: MotionSeries, avatar: MotionSeries,
                 fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User and avatar latents resampled on the grid of their overlapping stamps.

    Returns:
        grid (T,) ns, user (T, D), avatar (T, D).

    Raises:
        ValueError: latent sizes differ or the series do not overlap in time.
    """
    if user.latent.shape[1] != avatar.latent.shape[1]:
        raise ValueError(f'user latent size {user.latent.shape[1]} != avatar '
                         f'{avatar.latent.shape[1]}')
    first = max(user.stamp_ns.min(), avatar.stamp_ns.min())
    last = min(user.stamp_ns.max(), avatar.stamp_ns.max())
    grid = common_grid(int(first), int(last), fps)
    if len(grid) < 3:
        raise ValueError('user and avatar motion overlap in fewer than 3 frames')
    return (grid, resample(user.stamp_ns, user.latent, grid),
            resample(avatar.stamp_ns, avatar.latent, grid))


def on_grid(series: MotionSeries, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """One motion series resampled on a uniform grid over its own stamps: grid, (T, D)."""
    grid = common_grid(int(series.stamp_ns.min()), int(series.stamp_ns.max()), fps)
    return grid, resample(series.stamp_ns, series.latent, grid)
