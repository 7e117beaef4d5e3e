"""A 2.5D face rig on a portrait's landmarks: face parameters -> moved mesh vertices.

Vertices are the 478 MediaPipe landmarks (x, y in pixels, depth in x-pixel units) plus
anchor rings that make the motion fade out smoothly: the face oval scaled by each of
``RigConfig.ring_scales`` around the face centre (moving with the head by
``ring_head_weights`` and with the expressions of their oval point by
``ring_expression_weights``, so that a dropping chin carries the skin below it instead of folding
over it), and points on the image border and on a square ``still_margin`` inside it that never move (the frame between stays still), and
a row below the chin (neck and shoulders) that follows the head by ``shoulder_head_weight``.
This keeps the warp free of tearing at the face outline.

Expressions are linear: each expression parameter has a displacement basis (N, 3), built once
from the portrait's own geometry (distances in outer-eye-corner units ``s``); brow_raise has two,
one for raising and one for frowning (the inner brow ends draw together). The head pose is
then applied as a rotation of the expressed 3D vertices about a pivot behind the face, and
projected orthographically (yaw/pitch become 2.5D motion: near points move more than far ones).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable import motion_space as ms

# Eyelid rings just above each upper lid (same column order as the lid contours).
_LEFT_LID_RINGS = ((247, 30, 29, 27, 28, 56, 190), (113, 225, 224, 223, 222, 221, 189))
_RIGHT_LID_RINGS = ((467, 260, 259, 257, 258, 286, 414), (342, 445, 444, 443, 442, 441, 413))
_LEFT_INNER_BROW = (107, 66, 55, 65)       # inner ends of the brows (upper and lower edge)
_RIGHT_INNER_BROW = (336, 296, 285, 295)
_CHEEKS = (50, 280, 205, 425, 187, 411, 123, 352, 117, 346)


@dataclass(frozen=True)
class RigConfig:
    """Motion amplitudes at parameter value 1 (in outer-eye distances ``s`` unless stated)."""

    jaw_drop: float = 0.30          # lower-lip drop; perception reads jaw_open = 1 at this gap
    smile_up: float = 0.11          # mouth-corner lift (0.08 read back as 58-61 % of a smile on two faces)
    smile_out: float = 0.08         # mouth-corner outward shift, each side
    smile_cheek: float = 0.05       # cheek lift
    smile_squint: float = 0.045     # lower-lid lift (a smile narrows the eyes)
    pucker_in: float = 0.09         # mouth-corner inward shift, each side (0.075 read 50-75 %)
    pucker_round: float = 0.05      # outer-lip bulge up (upper lip) and down (lower lip) in the middle
    brow_lift: float = 0.11         # brow lift (0.08 read back as 15-45 % of the brow range; 0.16 ghosts)
    brow_lower: float = 0.05        # brow drop in a frown (brow_raise = -1) ...
    brow_squeeze: float = 0.04      # ... and the inner brow ends drawn towards the nose, each side
    gaze_x: float = 0.22            # iris shift, in eye widths
    gaze_y: float = 0.12            # iris shift, in eye widths
    lid_close: float = 0.94         # fraction of the lid gap the upper lid travels
    pivot_depth: float = 1.3        # head pivot behind the nose bridge
    depth_smoothing: float = 0.2    # width of the depth smoothing (avoids folds at the outline)
    depth_gain: float = 2.0         # depth exaggeration: perception then reads back about the commanded turn
    # A 2.5D warp shows a turn smaller than the rotation it applies (the profile never changes):
    # the fidelity loop (bench/bench_fidelity.py) read back 62-71 % of the commanded yaw at gain 1.
    # The applied yaw is yaw_limit_deg * tanh(yaw_gain * yaw / yaw_limit_deg): the gain for the turns
    # a talking head makes, but never more than the limit, where the nose starts to fold over the
    # cheek (the +-30 degree extremes then look no worse than without the gain).
    yaw_gain: float = 1.6
    yaw_limit_deg: float = 30.0
    ring_scales: tuple[float, ...] = (1.3, 1.8)       # anchor rings, x face-oval size
    ring_head_weights: tuple[float, ...] = (1.0, 0.3)  # how much each ring follows the head
    ring_expression_weights: tuple[float, ...] = (0.5, 0.1)  # ... and its oval point's expressions
    border_step: int = 64           # spacing of fixed border anchors, pixels
    shoulder_drop: float = 0.55     # a row of anchors this many face heights below the chin ...
    shoulder_head_weight: float = 0.2  # ... follows the head this much (neck and shoulders turn a little)
    still_margin: float = 0.06      # a frame this wide (fraction of the size) never moves


def _gaussian(points: np.ndarray, centres: np.ndarray, sigma: float, plateau: float = 0.0) -> np.ndarray:
    """(N,) max over centres of exp(-d^2 / 2 sigma^2), distances d in the image plane less
    `plateau` (1 within that distance)."""
    d = np.sqrt(((points[:, None, :2] - centres[None, :, :2]) ** 2).sum(-1).min(axis=1))
    d = np.maximum(d - plateau, 0.0)
    return np.exp(-d * d / (2.0 * sigma * sigma))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class FaceRig:
    """Vertices and per-parameter displacement bases for one portrait."""

    def __init__(self, points: np.ndarray, size: int, config: RigConfig = RigConfig()):
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (lm.NUM_LANDMARKS, 3):
            raise ValueError(f"expected ({lm.NUM_LANDMARKS}, 3) landmarks, got {points.shape}")
        self.config = config
        self.size = size
        self.scale = float(np.linalg.norm(points[lm.RIGHT_EYE_OUTER, :2] - points[lm.LEFT_EYE_OUTER, :2]))
        points = points.copy()
        depth = self._smooth_depth(points, config.depth_smoothing * self.scale)
        points[:, 2] = points[lm.NOSE_BRIDGE, 2] + config.depth_gain * (depth - points[lm.NOSE_BRIDGE, 2])
        anchors, head_weight, anchor_source = self._anchors(points)
        self.vertices = np.concatenate([points, anchors]).astype(np.float64)     # (N, 3)
        self.head_weight = np.concatenate([np.ones(len(points)), head_weight])   # (N,)
        self.num_landmarks = len(points)
        self.basis = np.zeros((ms.DIM, len(self.vertices), 3))                   # (DIM, N, 3)
        # Expressions are built in face-aligned coordinates (x along the eye line, y from
        # forehead to chin) and then turned into the image, so a tilted portrait still opens
        # its jaw along its own face.
        down = points[lm.CHIN, :2] - points[lm.FOREHEAD, :2]
        down /= np.linalg.norm(down)
        axes = np.array([[down[1], -down[0]], down])                              # rows: right, down
        face = points.copy()
        face[:, :2] = (points[:, :2] - points[lm.NOSE_BRIDGE, :2]) @ axes.T      # (478, 3)
        landmark_basis = self.basis[:, : self.num_landmarks]
        self._jaw(face, landmark_basis[ms.INDEX["jaw_open"]])
        self._smile(face, landmark_basis[ms.INDEX["smile"]])
        self._pucker(face, landmark_basis[ms.INDEX["mouth_pucker"]])
        self._blink(face, landmark_basis[ms.INDEX["blink_left"]], lm.LEFT_UPPER_LID,
                    lm.LEFT_LOWER_LID, _LEFT_LID_RINGS, lm.LEFT_IRIS)
        self._blink(face, landmark_basis[ms.INDEX["blink_right"]], lm.RIGHT_UPPER_LID,
                    lm.RIGHT_LOWER_LID, _RIGHT_LID_RINGS, lm.RIGHT_IRIS)
        self._brows(face, landmark_basis[ms.INDEX["brow_raise"]])
        # A frown is not a raise in reverse (the inner ends draw together): brow_raise < 0 uses
        # its own basis, applied in deform().
        self.frown_basis = np.zeros((len(self.vertices), 3))
        self._frown(face, self.frown_basis[: self.num_landmarks])
        self._gaze(face, landmark_basis[ms.INDEX["gaze_x"]], landmark_basis[ms.INDEX["gaze_y"]])
        ringed = anchor_source[:, 0] >= 0
        ring_index = np.nonzero(ringed)[0] + self.num_landmarks
        source, share = anchor_source[ringed, 0].astype(int), anchor_source[ringed, 1]
        self.basis[:, ring_index] = share[None, :, None] * self.basis[:, source]
        self.basis[..., :2] = self.basis[..., :2] @ axes                         # face -> image
        self.frown_basis[:, :2] = self.frown_basis[:, :2] @ axes
        self.pivot = np.array([points[lm.NOSE_BRIDGE, 0], points[lm.NOSE_TIP, 1],
                               points[lm.NOSE_BRIDGE, 2] + config.pivot_depth * self.scale])
        self._expression_index = ms.group_indices("expression")
        self._pose_index = ms.group_indices("pose")

    @staticmethod
    def _smooth_depth(points: np.ndarray, sigma: float) -> np.ndarray:
        """(N,) depth, Gaussian-smoothed (width `sigma` in the image) near the face outline.

        At the outline MediaPipe's depth falls steeply over a few pixels; rotating such depth
        would move neighbouring vertices so differently that the warp folds (a jagged cheek).
        Inside the face (nose, eyes) the raw depth is kept for a convincing parallax.
        """
        if sigma <= 0:
            return points[:, 2]
        d2 = ((points[:, None, :2] - points[None, :, :2]) ** 2).sum(-1)       # (N, N)
        weights = np.exp(-d2 / (2.0 * sigma * sigma))
        smooth = weights @ points[:, 2] / weights.sum(axis=1)
        near_outline = _gaussian(points, points[list(lm.FACE_OVAL)], sigma)
        return near_outline * smooth + (1.0 - near_outline) * points[:, 2]

    def _anchors(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Face-oval rings (moving with the head) and fixed border points -> (M, 3) positions,
        (M,) head weights and (M, 2) [oval landmark index or -1, share of its expressions]."""
        oval = points[list(lm.FACE_OVAL)]
        centre = oval.mean(axis=0)
        margin = self.config.still_margin * self.size
        rings, weights, sources = [], [], []
        cfg = self.config
        for ring_scale, weight, share in zip(cfg.ring_scales, cfg.ring_head_weights, cfg.ring_expression_weights):
            ring = oval.copy()
            ring[:, :2] = centre[:2] + ring_scale * (oval[:, :2] - centre[:2])
            inside = np.all((ring[:, :2] > margin + 2.0) & (ring[:, :2] < self.size - margin - 2.0), axis=1)
            rings.append(ring[inside])
            weights.append(np.full(int(inside.sum()), weight))
            sources.append(np.stack([np.array(lm.FACE_OVAL)[inside], np.full(int(inside.sum()), share)], axis=1))
        shoulders = self._shoulders(points, margin)
        rings.append(shoulders)
        weights.append(np.full(len(shoulders), cfg.shoulder_head_weight))
        sources.append(np.tile([-1.0, 0.0], (len(shoulders), 1)))
        for low, high in ((-1.0, float(self.size)), (margin, self.size - 1.0 - margin)):
            border = self._square(low, high, centre[2])
            rings.append(border)
            weights.append(np.zeros(len(border)))
            sources.append(np.tile([-1.0, 0.0], (len(border), 1)))
        return np.concatenate(rings), np.concatenate(weights), np.concatenate(sources).astype(np.float64)

    def _shoulders(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(M, 3) a row of points across the frame below the chin, where neck and shoulders are
        (none when the frame ends first): a head turn carries them a little, so it reads as a turn
        of the head on its body rather than a mask sliding over a still photograph."""
        face_height = float(np.linalg.norm(points[lm.CHIN, :2] - points[lm.FOREHEAD, :2]))
        y = points[lm.CHIN, 1] + self.config.shoulder_drop * face_height
        if y > (1.0 - 0.04) * self.size - margin:
            return np.zeros((0, 3))
        count = max(2, int(np.ceil((self.size - 2 * margin) / self.config.border_step)))
        xs = np.linspace(margin, self.size - margin, count + 1)[1:-1]
        return np.array([(x, y, points[lm.CHIN, 2]) for x in xs])

    def _square(self, low: float, high: float, depth: float) -> np.ndarray:
        """(M, 3) points every ~border_step pixels along the square [low, high]^2."""
        count = max(2, int(np.ceil((high - low) / self.config.border_step)) + 1)
        edge = np.linspace(low, high, count)
        xy = [(x, low) for x in edge] + [(x, high) for x in edge] \
            + [(low, y) for y in edge[1:-1]] + [(high, y) for y in edge[1:-1]]
        return np.array([(x, y, depth) for x, y in xy])

    def _jaw(self, p: np.ndarray, basis: np.ndarray) -> None:
        """Lower lip and chin drop; the drop fades towards the jaw hinges and above the mouth."""
        s, drop = self.scale, self.config.jaw_drop * self.scale
        mouth_y = 0.5 * (p[lm.MOUTH_LEFT, 1] + p[lm.MOUTH_RIGHT, 1])
        centre_x = p[lm.CHIN, 0]
        half_width = 0.5 * abs(p[lm.FACE_RIGHT_EDGE, 0] - p[lm.FACE_LEFT_EDGE, 0])
        vertical = _smoothstep((p[:, 1] - mouth_y) / (0.35 * s))
        lateral = np.clip(1.0 - ((p[:, 0] - centre_x) / half_width) ** 2, 0.0, 1.0)
        weight = vertical * (0.3 + 0.7 * lateral)
        weight[list(lm.UPPER_OUTER_LIP + lm.UPPER_INNER_LIP)] = 0.0
        # The lower lip opens as an arc: full drop in the middle, a third at the corners. Every
        # point of the lip moves so, not only its contours (the points between them lagged
        # behind the inner contour, which passed over them at a wide-open jaw).
        lip_outline = np.concatenate([p[list(lm.LOWER_INNER_LIP), :2], p[list(lm.LOWER_OUTER_LIP[::-1]), :2]])
        in_lip = [i for i in range(len(p)) if cv2.pointPolygonTest(
            lip_outline.astype(np.float32), (float(p[i, 0]), float(p[i, 1])), True) >= -0.01 * s]
        lower = sorted(set(lm.LOWER_OUTER_LIP + lm.LOWER_INNER_LIP) | set(in_lip))
        mouth_half = 0.5 * abs(p[lm.MOUTH_RIGHT, 0] - p[lm.MOUTH_LEFT, 0])
        along = np.clip(np.abs(p[lower, 0] - centre_x) / mouth_half, 0.0, 1.0)
        weight[lower] = 1.0 - 0.65 * along ** 2
        corners = [lm.MOUTH_LEFT, lm.MOUTH_RIGHT, lm.INNER_MOUTH_LEFT, lm.INNER_MOUTH_RIGHT]
        weight[corners] = 0.3
        basis[:, 1] = drop * weight
        inward = np.sign(centre_x - p[corners, 0])
        basis[corners, 0] = 0.04 * s * inward

    def _smile(self, p: np.ndarray, basis: np.ndarray) -> None:
        """Mouth corners up and out (with their neighbourhood), cheeks up, lower lids up."""
        s, cfg = self.scale, self.config
        for corner in (lm.MOUTH_LEFT, lm.MOUTH_RIGHT):
            outward = np.sign(p[corner, 0] - p[lm.CHIN, 0])
            w = _gaussian(p, p[[corner]], 0.15 * s)
            basis[:, 0] += w * cfg.smile_out * s * outward
            basis[:, 1] -= w * cfg.smile_up * s
        basis[:, 1] -= _gaussian(p, p[list(_CHEEKS)], 0.2 * s) * cfg.smile_cheek * s
        for lower, iris in ((lm.LEFT_LOWER_LID, lm.LEFT_IRIS), (lm.RIGHT_LOWER_LID, lm.RIGHT_IRIS)):
            # Less towards the eye corners, which stay (a uniform lift folded them in a narrow eye).
            basis[list(lower), 1] -= cfg.smile_squint * s * np.array([0.3, 0.7, 1.0, 1.0, 1.0, 0.7, 0.3])
            # The iris's lower edge lies on the lower lid: it rides up part of the way (else the
            # rising lid passed over it and folded the eye).
            basis[list(iris), 1] -= 0.6 * cfg.smile_squint * s

    def _pucker(self, p: np.ndarray, basis: np.ndarray) -> None:
        """Mouth corners (with their neighbourhood) in, and the lips rounded: pushed forward, they
        bulge up and down in the middle, so the mouth's outline turns from a slit to an oval."""
        s, cfg = self.scale, self.config
        for corner in (lm.MOUTH_LEFT, lm.MOUTH_RIGHT):
            inward = np.sign(p[lm.CHIN, 0] - p[corner, 0])
            basis[:, 0] += _gaussian(p, p[[corner]], 0.15 * s) * cfg.pucker_in * s * inward
        centre_x = 0.5 * (p[lm.MOUTH_LEFT, 0] + p[lm.MOUTH_RIGHT, 0])
        half = 0.5 * abs(p[lm.MOUTH_RIGHT, 0] - p[lm.MOUTH_LEFT, 0])
        for contour, up in ((lm.UPPER_OUTER_LIP[1:-1], -1.0), (lm.LOWER_OUTER_LIP[1:-1], 1.0)):
            along = np.clip(np.abs(p[list(contour), 0] - centre_x) / half, 0.0, 1.0)
            basis[list(contour), 1] += up * cfg.pucker_round * s * (1.0 - along ** 2)

    def _blink(self, p: np.ndarray, basis: np.ndarray, upper: tuple, lower: tuple,
               rings: tuple, iris: tuple) -> None:
        """Upper lid (and the skin above it, less) moves onto the lower lid; the iris follows."""
        gap = p[list(lower), :2] - p[list(upper), :2]              # (7, 2)
        close = self.config.lid_close
        basis[list(upper), :2] = close * gap
        basis[list(rings[0]), :2] = 0.5 * close * gap
        basis[list(rings[1]), :2] = 0.2 * close * gap
        basis[list(lower), 1] -= (1.0 - close) * 0.6 * gap[:, 1]
        basis[list(iris), 1] = 0.5 * close * gap[:, 1].mean()

    def _brow_weight(self, p: np.ndarray) -> np.ndarray:
        """(N,) how much each point moves with the brows: the forehead around them, fading out
        smoothly towards the eyes, which stay (a weight set to 0 only on the lid contours, as
        before, folded the mesh at the eye corners and split many brows in two when raised)."""
        brows = list(lm.LEFT_BROW + lm.RIGHT_BROW)
        # The whole brow moves as one (its hair reaches past MediaPipe's brow points, and a
        # brow stretched below them left a dark smear under a raised brow); the forehead follows less.
        weight = _gaussian(p, p[brows], 0.12 * self.scale, plateau=0.05 * self.scale) * self._eye_fade(p)
        weight[brows] = 1.0
        return weight

    def _eye_fade(self, p: np.ndarray) -> np.ndarray:
        """(N,) 0 on the eyes (lids, corners, irises), rising smoothly to 1 at 0.1 s from them."""
        eyes = list(lm.LEFT_UPPER_LID + lm.LEFT_LOWER_LID + lm.RIGHT_UPPER_LID + lm.RIGHT_LOWER_LID
                    + lm.LEFT_IRIS + lm.RIGHT_IRIS) + [lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER,
                                                       lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER]
        distance = np.sqrt(((p[:, None, :2] - p[None, eyes, :2]) ** 2).sum(-1).min(axis=1))
        return _smoothstep(distance / (0.1 * self.scale))

    def _brows(self, p: np.ndarray, basis: np.ndarray) -> None:
        """Brows up, with the forehead and upper-lid skin."""
        basis[:, 1] = -self.config.brow_lift * self.scale * self._brow_weight(p)

    def _frown(self, p: np.ndarray, basis: np.ndarray) -> None:
        """Brows down and their inner ends towards the nose (with the skin between them), per unit
        of frown (brow_raise = -1)."""
        s, cfg = self.scale, self.config
        basis[:, 1] = cfg.brow_lower * s * self._brow_weight(p)
        for inner in (_LEFT_INNER_BROW, _RIGHT_INNER_BROW):
            towards_nose = np.sign(p[lm.NOSE_BRIDGE, 0] - p[inner[0], 0])
            w = _gaussian(p, p[list(inner)], 0.1 * s) * self._eye_fade(p)
            basis[:, 0] += w * cfg.brow_squeeze * s * towards_nose
            basis[:, 1] += w * 0.3 * cfg.brow_lower * s

    def _gaze(self, p: np.ndarray, basis_x: np.ndarray, basis_y: np.ndarray) -> None:
        for outer, inner, iris in ((lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER, lm.LEFT_IRIS),
                                   (lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER, lm.RIGHT_IRIS)):
            width = abs(p[inner, 0] - p[outer, 0])
            basis_x[list(iris), 0] = self.config.gaze_x * width
            basis_y[list(iris), 1] = self.config.gaze_y * width

    def pose_rotation(self, yaw: float, pitch: float, roll: float) -> np.ndarray:
        """Degrees -> (3, 3) rotation in image axes (x right, y down, z into the image)."""
        a, b, c = np.radians([yaw, pitch, roll])
        ry = np.array([[np.cos(a), 0.0, -np.sin(a)], [0.0, 1.0, 0.0], [np.sin(a), 0.0, np.cos(a)]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
        rz = np.array([[np.cos(c), -np.sin(c), 0.0], [np.sin(c), np.cos(c), 0.0], [0.0, 0.0, 1.0]])
        return rz @ rx @ ry

    def deform(self, params: np.ndarray) -> np.ndarray:
        """(DIM,) face parameters -> (N, 2) moved vertex positions in pixels."""
        params = np.asarray(params, dtype=np.float64)
        if params.shape != (ms.DIM,):
            raise ValueError(f"expected ({ms.DIM},) face parameters, got {params.shape}")
        idx = self._expression_index
        expression = params[idx].copy()
        brow = expression[idx == ms.INDEX["brow_raise"]]
        frown = max(-float(brow[0]), 0.0)
        expression[idx == ms.INDEX["brow_raise"]] = max(float(brow[0]), 0.0)
        expressed = self.vertices + np.tensordot(expression, self.basis[idx], axes=1) \
            + frown * self.frown_basis                                                  # (N, 3)
        yaw, pitch, roll = params[self._pose_index]
        limit = self.config.yaw_limit_deg
        rotation = self.pose_rotation(limit * np.tanh(self.config.yaw_gain * yaw / limit), pitch, roll)
        rotated = (expressed - self.pivot) @ rotation.T + self.pivot
        moved = expressed + self.head_weight[:, None] * (rotated - expressed)
        return moved[:, :2]
