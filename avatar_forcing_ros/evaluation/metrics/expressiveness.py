"""Expressiveness of the avatar motion: variance and SID diversity.

- variance: per-dimension variance of the avatar latents over the session (latent units^2),
  and its mean per group.
- SID (as in the L2L / INFP evaluations): motion is cut into windows of ``window`` frames
  (hop window/2) on a uniform grid; each window of a group's series, standardised by the
  reference's per-series mean and std and flattened, is a point. k-means (k clusters, fixed
  seed) is fitted on the reference windows; SID = entropy (bits) of the histogram of the
  evaluated windows' nearest reference clusters. Higher = more diverse; the maximum is log2(k).
  The reference is a given bag (``--reference``) or, by default, the evaluated bag itself, so
  SID figures are comparable across bags only with a shared reference. Groups of more than
  ``SID_MAX_SERIES`` series (the raw ``all`` group of a high-dimensional latent) get no SID: the
  ``pca`` group summarises them.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.cluster.vq import kmeans2, vq

from ..session import MotionSeries
from .align import on_grid
from .motion_groups import Group, groups_for

SID_MAX_SERIES = 32


def windows(series: np.ndarray, window: int) -> np.ndarray:
    """(T, K) -> (N, window*K) flattened windows with hop ``window // 2``; N may be 0."""
    hop = max(window // 2, 1)
    starts = range(0, len(series) - window + 1, hop)
    return np.stack([series[s:s + window].ravel() for s in starts]) if len(series) >= window \
        else np.zeros((0, window * series.shape[1]))


def sid(reference: np.ndarray, evaluated: np.ndarray, clusters: int, window: int,
        seed: int = 0) -> dict:
    """SID of ``evaluated`` (T, K) against k-means clusters of ``reference`` (T', K) windows."""
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    ref_w = windows((reference - mean) / std, window)
    eval_w = windows((evaluated - mean) / std, window)
    if len(ref_w) < 4 or len(eval_w) == 0:
        return {'sid_bits': None, 'reason': f'too few windows of {window} frames'}
    distinct = len(np.unique(ref_w.round(6), axis=0))
    k = int(min(clusters, len(ref_w) // 2, distinct))
    if k < 2:   # the reference never moves: one cluster, zero diversity
        return {'sid_bits': 0.0, 'clusters': 1, 'max_bits': 0.0, 'windows': int(len(eval_w)),
                'window_frames': window}
    with warnings.catch_warnings():   # an empty cluster only means a zero histogram bin
        warnings.simplefilter('ignore')
        centroids, _ = kmeans2(ref_w, k, minit='++', seed=np.random.default_rng(seed))
    labels, _ = vq(eval_w, centroids)
    hist = np.bincount(labels, minlength=k) / len(labels)
    nonzero = hist[hist > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum())
    return {'sid_bits': entropy, 'clusters': k, 'max_bits': float(np.log2(k)),
            'windows': int(len(eval_w)), 'window_frames': window}


def expressiveness(avatar: MotionSeries | None, reference: MotionSeries | None, fps: float,
                   clusters: int = 40, window: int = 25) -> dict:
    """Variance per dim and group, and SID per group, of the avatar motion."""
    if avatar is None or len(avatar) < 2:
        return {'available': False, 'reason': 'unavailable: no avatar motion in the bag'}
    _, motion = on_grid(avatar, fps)
    reference = avatar if reference is None else reference
    if len(reference) < 2:
        return {'available': False, 'reason': 'unavailable: no reference motion'}
    if reference.latent.shape[1] != motion.shape[1]:
        return {'available': False, 'reason': 'reference latent size differs from the bag'}
    _, ref_motion = on_grid(reference, fps)
    groups: list[Group] = groups_for(avatar.latent_space, [ref_motion, motion])
    variance = avatar.latent.astype(np.float64).var(axis=0)
    out = {'available': True, 'variance_per_dim': variance.tolist(),
           'variance_mean': float(variance.mean()), 'groups': {}}
    for group in groups:
        entry = {'sid': sid(group.take(ref_motion), group.take(motion), clusters, window)
                 if len(group.names) <= SID_MAX_SERIES else
                 {'sid_bits': None, 'reason': f'more than {SID_MAX_SERIES} series; see pca'}}
        if group.indices is not None:
            entry['variance_mean'] = float(variance[group.indices].mean())
            entry['variance'] = {n: float(variance[i]) for n, i in zip(group.names, group.indices)}
        else:
            entry['variance'] = dict(zip(group.names, group.take(motion).var(axis=0).tolist()))
        out['groups'][group.name] = entry
    return out
