"""Named groups of motion-latent dimensions for the behaviour metrics.

- The portable space (``portable/face_params_v1``) has named parameters; its groups (pose,
  expression, mouth, eyes, brows) come from :mod:`avatar_forcing_ros.portable.motion_space`.
- Any other space (e.g. the LIA motion latent of the neural backend) has no named dimensions:
  its groups are ``all`` (every raw dimension) and ``pca`` (the top principal components of
  the pooled motion, each component one series). PCA is fitted on the motions being compared,
  each centred on its own mean: a constant offset between them (another neutral pose) is not
  motion, and would otherwise become the first component.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.linalg

from ...portable import motion_space

PCA_COMPONENTS = 8
PCA_MAX_ROWS = 3000


@dataclass(frozen=True)
class Group:
    """A set of series (columns) compared together; ``names`` label its columns."""

    name: str
    names: tuple[str, ...]
    indices: np.ndarray | None = None        # columns of the raw latent, or None for PCA
    basis: np.ndarray | None = None          # (D, K) projection for PCA groups

    def take(self, latent: np.ndarray) -> np.ndarray:
        """(T, D) latents -> (T, len(names)) series of this group (PCA series are uncentred:
        every use, Pearson r, variance and standardised SID windows, removes its own mean)."""
        if self.basis is not None:
            return latent @ self.basis
        return latent[:, self.indices]


def is_portable(latent_space: str, dim: int) -> bool:
    """True for the portable face-parameter space with its expected dimension."""
    return latent_space == motion_space.LATENT_SPACE and dim == motion_space.DIM


def pca_basis(motions: Sequence[np.ndarray], components: int = PCA_COMPONENTS,
              max_rows: int = PCA_MAX_ROWS) -> np.ndarray:
    """(D, K) top-K principal components of the pooled (N_i, D) ``motions``, each centred on
    its own mean.

    Fitted on at most ``max_rows`` evenly spaced rows in all (plenty for a few components, and
    it keeps a 10-minute 512-D session fast).
    """
    total = sum(len(m) for m in motions)
    step = max(1, total // max_rows)
    rows = np.concatenate([m[::step] - m.mean(axis=0) for m in motions]).astype(np.float64)
    dim = rows.shape[1]
    k = min(components, dim)
    _, eigvec = scipy.linalg.eigh(rows.T @ rows, subset_by_index=[dim - k, dim - 1])  # (D, k)
    return eigvec[:, ::-1]                                                # largest first


def groups_for(latent_space: str, motions: Sequence[np.ndarray]) -> list[Group]:
    """Groups for a space, given the (N_i, D) motions compared (they fit the PCA of unnamed
    spaces)."""
    dim = motions[0].shape[1]
    if is_portable(latent_space, dim):
        return [Group(name, tuple(motion_space.GROUPS[name]), motion_space.group_indices(name))
                for name in motion_space.GROUPS]
    basis = pca_basis(motions)
    return [Group('all', tuple(f'd{i}' for i in range(dim)), np.arange(dim)),
            Group('pca', tuple(f'pc{i + 1}' for i in range(basis.shape[1])), basis=basis)]


def mouth_energy(latent_space: str, latent: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-frame mouth activity for the lip-sync proxy: (T,) series and what it is.

    Portable space: the ``jaw_open`` parameter. Other spaces: frame-to-frame latent speed
    ``||z_t - z_(t-1)||`` (first frame repeats the second), in latent units per frame.
    """
    if is_portable(latent_space, latent.shape[1]):
        return latent[:, motion_space.INDEX['jaw_open']].astype(np.float64), 'jaw_open'
    speed = np.linalg.norm(np.diff(latent.astype(np.float64), axis=0), axis=1)
    return np.r_[speed[:1], speed] if speed.size else np.zeros(len(latent)), 'latent_speed'
