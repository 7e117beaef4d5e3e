"""The avatar's facial expression as a category and valence/arousal (for ROS4HRI's
hri_msgs/Expression), from the portable motion space's face parameters.

Only the portable backend's parameters are interpretable (the neural LIA latent is not), so this
applies to ``motion_space.LATENT_SPACE`` frames only. The rules are deliberately few: the
parameters carry a smile, raised or lowered brows and an open jaw, which separate happy,
surprised and frowning (annoyed) faces from neutral; speech opens the jaw too, so surprise needs
raised brows as well. Valence follows the smile (a frown lowers it), arousal the brows and the
jaw; confidence is how far the deciding measure is past its threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_forcing_ros.portable import motion_space as ms

HAPPY_SMILE = 0.35      # smile at and above which the face reads as happy
SURPRISE_BROWS = 0.5    # raised brows ...
SURPRISE_JAW = 0.4      # ... with an open jaw read as surprised
FROWN_BROWS = -0.4      # lowered brows read as annoyed


@dataclass(frozen=True)
class ExpressionLabel:
    expression: str     # one of hri_msgs/Expression's constants' values ('happy', 'neutral', ...)
    valence: float      # [-1, 1]
    arousal: float      # [-1, 1]
    confidence: float   # [0, 1]


def _margin(value: float, threshold: float, span: float) -> float:
    return float(np.clip(0.5 + (value - threshold) / span, 0.0, 1.0))


def classify(params: np.ndarray) -> ExpressionLabel:
    """(ms.DIM,) face parameters -> the expression they show."""
    p = {name: float(params[i]) for name, i in ms.INDEX.items()}
    smile, brows, jaw = p["smile"], p["brow_raise"], p["jaw_open"]
    valence = float(np.clip(smile + 0.5 * min(brows, 0.0), -1.0, 1.0))
    arousal = float(np.clip(abs(brows) + jaw - 0.5, -1.0, 1.0))
    if brows >= SURPRISE_BROWS and jaw >= SURPRISE_JAW:
        label, confidence = "surprised", _margin(min(brows - SURPRISE_BROWS, jaw - SURPRISE_JAW), 0.0, 0.4)
    elif smile >= HAPPY_SMILE:
        label, confidence = "happy", _margin(smile, HAPPY_SMILE, 0.6)
    elif brows <= FROWN_BROWS:
        label, confidence = "annoyed", _margin(-brows, -FROWN_BROWS, 0.6)
    else:
        nearest = max(smile / HAPPY_SMILE, brows / SURPRISE_BROWS, brows / FROWN_BROWS, 0.0)
        label, confidence = "neutral", float(np.clip(1.0 - 0.5 * nearest, 0.0, 1.0))
    return ExpressionLabel(label, valence, arousal, confidence)
