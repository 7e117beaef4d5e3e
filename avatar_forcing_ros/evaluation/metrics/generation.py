"""Generation health: hold frames, NFE and guidance branches over time, status counters.

Hold frames are frames the generator repeated because generation fell behind (MotionLatent
``is_hold``); NFE is function evaluations per block; guidance branches 3/2/1 (see the message).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..session import MotionSeries, Session


def _histogram(values: np.ndarray) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(values.tolist()).items())}


def generation_metrics(motion: MotionSeries | None) -> dict | None:
    """Hold-frame count and fraction, NFE statistics and histograms; None without motion."""
    if motion is None or len(motion) == 0:
        return None
    holds = motion.is_hold.astype(bool)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, holds.astype(int), 0])))[::2]
    return {'frames': len(motion), 'latent_space': motion.latent_space,
            'latent_dim': int(motion.latent.shape[1]),
            'hold_frames': int(holds.sum()), 'hold_fraction': float(holds.mean()),
            'longest_hold_run_frames': int(runs.max()) if runs.size else 0,
            'nfe_mean': float(motion.nfe.mean()), 'nfe_min': int(motion.nfe.min()),
            'nfe_max': int(motion.nfe.max()), 'nfe_histogram': _histogram(motion.nfe),
            'guidance_branches_histogram': _histogram(motion.guidance_branches)}


def generation_timeline(motion: MotionSeries, window: int = 25) -> dict[str, np.ndarray]:
    """Series for plotting: time (s from the first frame), NFE, hold fraction over ``window``."""
    t = (motion.log_ns - motion.log_ns[0]) / 1e9
    window = min(window, len(motion))   # 'same' returns the longer input: keep it the series
    kernel = np.ones(window) / window
    hold_rate = np.convolve(motion.is_hold.astype(float), kernel, mode='same')
    return {'t_s': t, 'nfe': motion.nfe, 'guidance_branches': motion.guidance_branches,
            'hold_fraction': hold_rate}


def _face_metrics(status: dict[str, np.ndarray]) -> dict:
    """What camera perception saw (GeneratorStatus.face_found_fraction, last_face_age_s):
    the mean over the status messages of the fraction of recent camera frames with a face, and
    the longest time without one (the largest last-face age, to the 1 s status period). None
    where no message carries a value (no camera, a bag from before these fields, no face ever)."""
    fraction = status['face_found_fraction'][np.isfinite(status['face_found_fraction'])]
    age = status['last_face_age_s'][status['last_face_age_s'] >= 0]    # NaN and 'never' drop out
    return {'face_found_fraction_mean': float(fraction.mean()) if fraction.size else None,
            'longest_without_face_s': float(age.max()) if age.size else None}


def status_metrics(session: Session) -> dict | None:
    """Summary of GeneratorStatus: last counters, mean compute per block (s), face perception."""
    status = session.status
    if status is None or len(status['log_ns']) == 0:
        return None
    last = {name: float(status[name][-1]) for name in
            ('frames_published', 'hold_frames', 'late_blocks', 'malformed_inputs')}
    return {'messages': int(len(status['log_ns'])), 'last_counters': last,
            'mean_block_compute_s': float(np.mean(status['mean_block_compute_s'])),
            'max_queue_depth': float(np.max(status['queue_depth'])),
            'last_latency_ms_p50': float(np.median(status['last_latency_ms'])),
            **_face_metrics(status)}
