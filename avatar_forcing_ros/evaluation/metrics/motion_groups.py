"""Named groups of motion-latent dimensions for the behaviour metrics.

- The portable space (``portable/face_params_v1``) has named parameters; its groups (pose,
  expression, mouth, eyes, brows) come from :mod:`avatar_forcing_ros.portable.motion_space`.
- Any other space (e.g. the LIA motion latent of the neural backend) has no named dimensions:
  its groups are ``all`` (every raw dimension) and ``pca`` (the top principal components of
  the pooled motion, each component one series). PCA is fitted on the data being compared.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    mean: np.ndarray | None = None           # (D,) centre for PCA groups

    def take(self, latent: np.ndarray) -> np.ndarray:
        """(T, D) latents -> (T, len(names)) series of this group."""
        if self.basis is not None:
            return (latent - self.mean) @ self.basis
        return latent[:, self.indices]


def is_portable(latent_space: str, dim: int) -> bool:
    """True for the portable face-parameter space with its expected dimension."""
    return latent_space == motion_space.LATENT_SPACE and dim == motion_space.DIM


def pca_basis(pooled: np.ndarray, components: int = PCA_COMPONENTS,
              max_rows: int = PCA_MAX_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), basis (D, K)) of the top-K principal components of (N, D) ``pooled``.

    Fitted on at most ``max_rows`` evenly spaced rows (plenty for a few components, and it
    keeps a 10-minute 512-D session fast).
    """
    rows = pooled[:: max(1, len(pooled) // max_rows)].astype(np.float64)
    mean = rows.mean(axis=0)
    dim = rows.shape[1]
    k = min(components, dim)
    _, eigvec = scipy.linalg.eigh((rows - mean).T @ (rows - mean),
                                  subset_by_index=[dim - k, dim - 1])   # ascending; (D, k)
    return mean, eigvec[:, ::-1]


def groups_for(latent_space: str, pooled: np.ndarray) -> list[Group]:
    """Groups for a space, given (N, D) pooled motion (used to fit PCA for unnamed spaces)."""
    dim = pooled.shape[1]
    if is_portable(latent_space, dim):
        return [Group(name, tuple(motion_space.GROUPS[name]), motion_space.group_indices(name))
                for name in motion_space.GROUPS]
    mean, basis = pca_basis(pooled)
    return [Group('all', tuple(f'd{i}' for i in range(dim)), np.arange(dim)),
            Group('pca', tuple(f'pc{i + 1}' for i in range(basis.shape[1])), basis=basis, mean=mean)]


def mouth_energy(latent_space: str, latent: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-frame mouth activity for the lip-sync proxy: (T,) series and what it is.

    Portable space: the ``jaw_open`` parameter. Other spaces: frame-to-frame latent speed
    ``||z_t - z_(t-1)||`` (first frame repeats the second), in latent units per frame.
    """
    if is_portable(latent_space, latent.shape[1]):
        return latent[:, motion_space.INDEX['jaw_open']].astype(np.float64), 'jaw_open'
    speed = np.linalg.norm(np.diff(latent.astype(np.float64), axis=0), axis=1)
    return np.r_[speed[:1], speed] if speed.size else np.zeros(len(latent)), 'latent_speed'
