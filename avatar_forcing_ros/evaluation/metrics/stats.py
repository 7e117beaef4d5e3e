"""Small numeric helpers shared by the metrics: distributions, lagged correlation, resampling."""
from __future__ import annotations

import numpy as np


def distribution(values: np.ndarray) -> dict[str, float] | None:
    """count, mean, std, min, p50, p90, p99, max of ``values`` (same unit); None when empty."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {'count': int(values.size), 'mean': float(values.mean()), 'std': float(values.std()),
            'min': float(values.min()), 'p50': float(p50), 'p90': float(p90), 'p99': float(p99),
            'max': float(values.max())}


def lagged_pearson(lead: np.ndarray, follow: np.ndarray, max_lag: int) -> np.ndarray:
    """Pearson r between ``lead[t]`` and ``follow[t + lag]`` for lag = 0..max_lag, per column.

    Args:
        lead, follow: (T, D) series on the same time grid.
        max_lag: largest lag in grid steps; clipped so that at least 3 samples overlap.

    Returns:
        (L, D) correlations, L = clipped max_lag + 1; NaN where a window has zero variance.
    """
    lead = np.asarray(lead, np.float64)
    follow = np.asarray(follow, np.float64)
    if lead.shape != follow.shape or lead.ndim != 2:
        raise ValueError(f'series must share a (T, D) shape, got {lead.shape} and {follow.shape}')
    steps = lead.shape[0]
    max_lag = max(0, min(int(max_lag), steps - 3))
    out = np.full((max_lag + 1, lead.shape[1]), np.nan)
    for lag in range(max_lag + 1):
        out[lag] = pearson_columns(lead[: steps - lag], follow[lag:])
    return out


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of matching columns of (T, D) arrays; NaN for a constant column."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(denom > 0, (a * b).sum(axis=0) / np.where(denom > 0, denom, 1), np.nan)


def resample(times_ns: np.ndarray, values: np.ndarray, grid_ns: np.ndarray) -> np.ndarray:
    """Linear interpolation of (N, D) ``values`` sampled at ``times_ns`` onto ``grid_ns``.

    Duplicate times keep their last value; the grid must lie inside [times[0], times[-1]].
    """
    times_ns, keep = np.unique(times_ns[::-1], return_index=True)
    values = values[::-1][keep]
    t = (times_ns - grid_ns[0]).astype(np.float64)
    g = (grid_ns - grid_ns[0]).astype(np.float64)
    return np.stack([np.interp(g, t, values[:, d]) for d in range(values.shape[1])], axis=1)
