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

    Exact per-lag Pearson r (each lag uses only its overlapping samples), computed for all lags
    at once: the cross sums by FFT correlation and the window means/variances by prefix sums,
    so cost is O(D T log T) rather than O(L D T).

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
    a = lead - lead.mean(axis=0)                                  # (T, D), centred for precision
    b = follow - follow.mean(axis=0)
    size = 1 << int(np.ceil(np.log2(2 * steps)))
    cross = np.fft.irfft(np.conj(np.fft.rfft(a, size, axis=0)) * np.fft.rfft(b, size, axis=0),
                         size, axis=0)[: max_lag + 1]             # (L, D): sum_t a[t] b[t+L]
    lags = np.arange(max_lag + 1)
    count = (steps - lags)[:, None]                               # (L, 1) overlapping samples
    zero = np.zeros((1, a.shape[1]))
    ca, caa = np.cumsum(np.r_[zero, a], axis=0), np.cumsum(np.r_[zero, a * a], axis=0)
    cb, cbb = np.cumsum(np.r_[zero, b], axis=0), np.cumsum(np.r_[zero, b * b], axis=0)
    sum_a, sum_aa = ca[steps - lags], caa[steps - lags]           # a[0 : T-L]
    sum_b, sum_bb = cb[steps] - cb[lags], cbb[steps] - cbb[lags]  # b[L : T]
    cov = cross - sum_a * sum_b / count
    var = (sum_aa - sum_a ** 2 / count) * (sum_bb - sum_b ** 2 / count)
    scale = np.maximum(np.abs(sum_aa) * np.abs(sum_bb), 1e-300)
    ok = var > 1e-12 * scale
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(ok, cov / np.sqrt(np.where(ok, var, 1.0)), np.nan)


def resample(times_ns: np.ndarray, values: np.ndarray, grid_ns: np.ndarray) -> np.ndarray:
    """Linear interpolation of (N, D) ``values`` sampled at ``times_ns`` onto ``grid_ns``.

    Duplicate times keep their last value; the grid must lie inside [times[0], times[-1]].
    """
    times_ns, keep = np.unique(times_ns[::-1], return_index=True)
    values = np.asarray(values, np.float64)[::-1][keep]                   # (N, D)
    if len(times_ns) == 1:
        return np.repeat(values, len(grid_ns), axis=0)
    t = (times_ns - grid_ns[0]).astype(np.float64)
    g = (grid_ns - grid_ns[0]).astype(np.float64)
    right = np.clip(np.searchsorted(t, g, side='right'), 1, len(t) - 1)  # (T,)
    left = right - 1
    weight = np.clip((g - t[left]) / (t[right] - t[left]), 0.0, 1.0)[:, None]
    return values[left] * (1.0 - weight) + values[right] * weight        # (T, D)
