"""Dense image warping driven by displacements of a triangulated set of control points.

Set-up (once per portrait): Delaunay-triangulate the rest positions of the vertices (nudging
exact duplicates apart so that every vertex takes part) and, for
every pixel of a coarse grid (``field_scale`` of the output), store its triangle's three vertex
ids and barycentric weights as one sparse matrix W (pixels x vertices).

Per frame: vertex displacements (N, 2) -> coarse displacement field W @ D -> backward
correction on the coarse grid -> bilinear upsample -> sampling map -> one cv2.remap.
The forward displacement d(x) maps a source point x to x + d(x); the output pixel p must
sample the source at x with x + d(x) = p. Starting from x0 = p - d(p), one fixed-point step
x1 = p - d(x0) makes this accurate for the smooth motions a face makes (x0 alone would be off
by about d . grad d, visible at the opening jaw).
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import sparse
from scipy.spatial import Delaunay


def _separate_duplicates(points: np.ndarray, min_distance: float = 0.25) -> np.ndarray:
    """Nudge vertices lying on top of an earlier one (e.g. closed lips) so each stays a vertex."""
    points = points.copy()
    for _ in range(4):
        diff = points[:, None] - points[None]                           # (N, N, 2)
        close = np.triu((diff ** 2).sum(-1) < min_distance ** 2, k=1)
        if not close.any():
            return points
        points[np.unique(np.nonzero(close)[1]), 1] += 2.0 * min_distance
    return points


class MeshWarp:
    """Warps (size, size) images by displacing the vertices of a fixed triangulation."""

    def __init__(self, rest_vertices: np.ndarray, size: int, field_scale: float = 0.5):
        rest = np.asarray(rest_vertices, dtype=np.float64)
        if rest.ndim != 2 or rest.shape[1] != 2:
            raise ValueError(f"expected (N, 2) vertices, got {rest.shape}")
        if not 0.0 < field_scale <= 1.0:
            raise ValueError(f"field_scale must be in (0, 1], got {field_scale}")
        self.size = size
        self.coarse = max(8, round(size * field_scale))
        self.triangulation = Delaunay(_separate_duplicates(rest))
        if len(self.triangulation.coplanar):
            raise ValueError("some mesh vertices coincide and would be ignored by the triangulation")
        self.weights = self._pixel_weights()
        grid = np.arange(size, dtype=np.float32)
        self._grid_x, self._grid_y = np.meshgrid(grid, grid)   # (S, S) each
        coarse = np.arange(self.coarse, dtype=np.float32)
        self._coarse_grid = np.stack(np.meshgrid(coarse, coarse), axis=-1)   # (c, c, 2)

    def _pixel_weights(self) -> sparse.csr_matrix:
        """Sparse (coarse^2, N) barycentric weights of the coarse grid's pixel centres."""
        step = self.size / self.coarse
        centres = (np.arange(self.coarse) + 0.5) * step - 0.5     # in output pixels
        xs, ys = np.meshgrid(centres, centres)
        pixels = np.stack([xs.ravel(), ys.ravel()], axis=1)        # (P, 2)
        simplex = self._rasterise(step).ravel()
        bary = self._barycentric(simplex, pixels)
        # Pixels that drawing left unclaimed or gave to a neighbouring sliver: exact point location
        # (scipy's walk is fast per point but can be slow over a whole image, hence the drawing).
        redo = ~(bary.min(axis=1) >= -1e-3)
        if np.any(redo):
            simplex[redo] = self.triangulation.find_simplex(pixels[redo])
            bary[redo] = self._barycentric(simplex[redo], pixels[redo])
        if np.any(simplex < 0):
            raise ValueError("the control points do not cover the image; add border anchors")
        vertex_ids = self.triangulation.simplices[simplex]          # (P, 3)
        rows = np.repeat(np.arange(len(pixels)), 3)
        return sparse.csr_matrix((bary.ravel(), (rows, vertex_ids.ravel())),
                                 shape=(len(pixels), self.triangulation.npoints), dtype=np.float32)

    def _barycentric(self, simplex: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """(P, 3) barycentric coordinates of (P, 2) pixels in their triangles (NaN where id < 0)."""
        transform = self.triangulation.transform[simplex]          # (P, 3, 2)
        b01 = np.einsum("pij,pj->pi", transform[:, :2], pixels - transform[:, 2])  # (P, 2)
        bary = np.concatenate([b01, 1.0 - b01.sum(axis=1, keepdims=True)], axis=1)
        bary[simplex < 0] = np.nan
        return bary

    def _rasterise(self, step: float) -> np.ndarray:
        """(coarse, coarse) int32 id of the triangle drawn over each coarse pixel, -1 for none."""
        ids = np.full((self.coarse, self.coarse), -1, dtype=np.int32)
        coarse_xy = (self.triangulation.points + 0.5) / step - 0.5     # vertices in coarse pixels
        corners = np.round(coarse_xy[self.triangulation.simplices] * 16).astype(np.int32)  # (T, 3, 2)
        for index, triangle in enumerate(corners):
            cv2.fillConvexPoly(ids, triangle, index, lineType=cv2.LINE_8, shift=4)
        return ids

    def sampling_map(self, displacement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) vertex displacements in pixels -> (map_x, map_y), each (S, S) float32."""
        coarse = (self.weights @ displacement.astype(np.float32)).astype(np.float32)  # (P, 2)
        coarse = coarse.reshape(self.coarse, self.coarse, 2)                           # (c, c, 2)
        # Fixed-point step on the coarse grid: coarse pixel i sits at full-res (i + 0.5) * step - 0.5,
        # so the full-res point p - d(p) is coarse coordinate i - d / step.
        step = self.size / self.coarse
        back = self._coarse_grid - coarse / step
        coarse = cv2.remap(coarse, back[..., 0], back[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        field = cv2.resize(coarse, (self.size, self.size), interpolation=cv2.INTER_LINEAR)  # (S, S, 2)
        return self._grid_x - field[..., 0], self._grid_y - field[..., 1]

    def warp(self, image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """Warp an (S, S, C) image so that each vertex moves by its displacement."""
        map_x, map_y = self.sampling_map(displacement)
        # Fixed-point maps (1/32 pixel) make the remap itself about 1.5x faster.
        fixed, fraction = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        return cv2.remap(image, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
