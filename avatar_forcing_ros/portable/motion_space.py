"""The portable backend's motion space: a small vector of named, interpretable face parameters.

Every frame of the portable backend is one vector of ``DIM`` float32 values in the fixed order
of ``PARAMETERS``. It travels in ``MotionLatent.latent`` with ``latent_space == LATENT_SPACE``
so that consumers (renderer, evaluator) can tell it apart from the neural LIA latent space.

Conventions (all in the *image* of the face, as a viewer sees it, so nothing depends on whose
left is meant):

- head angles in **degrees**: ``head_yaw`` > 0 turns the nose towards image right,
  ``head_pitch`` > 0 tilts the nose down (a nod goes down first), ``head_roll`` > 0 rotates the
  face clockwise in the image;
- ``jaw_open`` 0 = lips closed, 1 = wide open (about a third of the nose-to-chin distance);
- ``smile`` 0 = neutral, 1 = broad smile (mouth corners up and out), negative = corners down;
- ``mouth_pucker`` 0 = neutral, 1 = lips pushed together (corners in);
- ``blink_left`` / ``blink_right``: eye on the image's left / right; 0 = open, 1 = closed;
- ``brow_raise`` 0 = neutral, 1 = raised, negative = lowered (frown);
- ``gaze_x`` / ``gaze_y`` in [-1, 1]: iris offset as a fraction of its possible travel,
  > 0 towards image right / image down.

The neutral vector is all zeros: a frontal face, mouth closed, eyes open, looking ahead.
Perception reports absolute values (calibrated on typical faces); the renderer applies the
vector as offsets from the portrait's own expression (a smiling photograph at smile 0 keeps
its smile, and its head pose is pose 0).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

LATENT_SPACE = "portable/face_params_v1"

# (name, low, high): the fixed order of the vector and the valid range of each entry.
_SPEC: tuple[tuple[str, float, float], ...] = (
    ("head_yaw", -30.0, 30.0),
    ("head_pitch", -25.0, 25.0),
    ("head_roll", -25.0, 25.0),
    ("jaw_open", 0.0, 1.0),
    ("smile", -0.5, 1.0),
    ("mouth_pucker", 0.0, 1.0),
    ("blink_left", 0.0, 1.0),
    ("blink_right", 0.0, 1.0),
    ("brow_raise", -1.0, 1.0),
    ("gaze_x", -1.0, 1.0),
    ("gaze_y", -1.0, 1.0),
)

PARAMETERS: tuple[str, ...] = tuple(name for name, _, _ in _SPEC)
DIM = len(PARAMETERS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAMETERS)}
LOW = np.array([low for _, low, _ in _SPEC], dtype=np.float32)     # (DIM,)
HIGH = np.array([high for _, _, high in _SPEC], dtype=np.float32)  # (DIM,)
NEUTRAL = np.zeros(DIM, dtype=np.float32)                          # (DIM,)

# Dimension groups (names), e.g. for the evaluator: pose vs. expression, and finer parts.
POSE = ("head_yaw", "head_pitch", "head_roll")
EXPRESSION = tuple(name for name in PARAMETERS if name not in POSE)
MOUTH = ("jaw_open", "smile", "mouth_pucker")
EYES = ("blink_left", "blink_right", "gaze_x", "gaze_y")
GROUPS: dict[str, tuple[str, ...]] = {
    "pose": POSE, "expression": EXPRESSION, "mouth": MOUTH, "eyes": EYES, "brows": ("brow_raise",),
}


def group_indices(group: str) -> np.ndarray:
    """Indices into the vector of a named group ('pose', 'expression', 'mouth', 'eyes', 'brows')."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; known: {sorted(GROUPS)}")
    return np.array([INDEX[name] for name in GROUPS[group]], dtype=np.int64)


def clip(vector: np.ndarray) -> np.ndarray:
    """Clamp a (..., DIM) array to the valid ranges; returns float32."""
    vector = np.asarray(vector, dtype=np.float32)
    if vector.shape[-1] != DIM:
        raise ValueError(f"expected last dimension {DIM}, got shape {vector.shape}")
    return np.clip(vector, LOW, HIGH)


def to_dict(vector: np.ndarray) -> dict[str, float]:
    """(DIM,) vector -> {name: value}."""
    vector = np.asarray(vector, dtype=np.float32)
    if vector.shape != (DIM,):
        raise ValueError(f"expected shape ({DIM},), got {vector.shape}")
    return {name: float(vector[i]) for i, name in enumerate(PARAMETERS)}


def from_dict(values: Mapping[str, float]) -> np.ndarray:
    """{name: value} -> (DIM,) float32 vector; missing names stay neutral, unknown names are an error."""
    unknown = set(values) - set(PARAMETERS)
    if unknown:
        raise ValueError(f"unknown face parameters {sorted(unknown)}; known: {PARAMETERS}")
    vector = NEUTRAL.copy()
    for name, value in values.items():
        vector[INDEX[name]] = float(value)
    return vector
