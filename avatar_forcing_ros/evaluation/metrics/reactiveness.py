"""Reactiveness: how the avatar's motion follows the user's, per dimension group, with lag.

Both motions are resampled on a common grid at the avatar frame rate by header stamp (user:
capture time, avatar: media time). For each lag L = 0..max_lag frames (avatar lagging the user)
and each series d of a group, r_d(L) = Pearson(user_d[t], avatar_d[t + L]) (as the paper's
PCC between listener and speaker motion; without ground truth this is the plain PCC, not rPCC).
A group's score at L is the mean of |r_d(L)| over its series (mirroring, e.g. a yaw sign flip,
counts as following); its best lag maximises that score. Each series also reports its own best
lag and signed r. Unit of lag: frames (and seconds = frames / fps).
"""
from __future__ import annotations

import numpy as np

from ..session import Session
from .align import aligned_pair
from .motion_groups import groups_for
from .stats import lagged_pearson


def _nan_to_none(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def group_reactiveness(user: np.ndarray, avatar: np.ndarray, names: tuple[str, ...],
                       max_lag: int, fps: float) -> dict:
    """Lag search for one group; ``user``/``avatar`` are (T, K) series on the same grid."""
    r = lagged_pearson(user, avatar, max_lag)                          # (L, K)
    with np.errstate(invalid='ignore'):
        score = np.nanmean(np.abs(r), axis=1) if np.isfinite(r).any() else np.full(len(r), np.nan)
    if not np.isfinite(score).any():
        return {'best_lag_frames': None, 'score': None, 'reason': 'constant motion'}
    best = int(np.nanargmax(score))
    dims = {}
    for k, name in enumerate(names):
        if np.isfinite(r[:, k]).any():
            lag = int(np.nanargmax(np.abs(r[:, k])))
            dims[name] = {'best_lag_frames': lag, 'r': float(r[lag, k]),
                          'r_at_group_lag': _nan_to_none(r[best, k])}
    return {'best_lag_frames': best, 'best_lag_s': best / fps, 'score': float(score[best]),
            'score_at_lag0': _nan_to_none(score[0]),
            'score_by_lag': [_nan_to_none(s) for s in score], 'dims': dims}


def reactiveness(session: Session, fps: float, max_lag: int) -> dict:
    """Per-group lag search between user and avatar motion, or ``available: False`` and why."""
    user, avatar = session.user_motion, session.avatar_motion
    if user is None or avatar is None or len(user) < 3 or len(avatar) < 3:
        missing = 'user motion' if user is None or len(user) < 3 else 'avatar motion'
        return {'available': False, 'reason': f'unavailable: no {missing} in the bag'}
    if user.latent_space != avatar.latent_space:
        return {'available': False, 'reason': f'unavailable: user space {user.latent_space!r} '
                                              f'differs from avatar space {avatar.latent_space!r}'}
    try:
        grid, user_grid, avatar_grid = aligned_pair(user, avatar, fps)
    except ValueError as err:
        return {'available': False, 'reason': f'unavailable: {err}'}
    groups = groups_for(avatar.latent_space, [user_grid, avatar_grid])
    return {'available': True, 'frames': len(grid), 'max_lag_frames': max_lag,
            'groups': {g.name: group_reactiveness(g.take(user_grid), g.take(avatar_grid),
                                                  g.names, max_lag, fps) for g in groups}}
