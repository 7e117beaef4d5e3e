"""Listening behaviour beyond the nod: laughing along, gaze aversion at the avatar's turn start,
posture shifts (parameters in behaviour_rules.BehaviourParams; wired in behaviour.py).

Like the other rule pieces, each advances one video frame per call, uses only information up to
that frame and is deterministic given its random stream.
"""
from __future__ import annotations

import math

import numpy as np

from avatar_forcing_ros.portable.behaviour_rules import BehaviourParams, smoothing


def bump(u: float) -> float:
    """Smooth 0 -> 1 -> 0 envelope over u in [0, 1] (0 outside): quick rise, longer fall."""
    if not 0.0 <= u <= 1.0:
        return 0.0
    return math.sin(math.pi * math.sqrt(u))


class LaughAlong:
    """A broad user smile held for ``laugh_onset_s`` starts a laugh: a full smile, the jaw opening in
    "ha-ha" pulses, eyes narrowing (cheeks pushed up), the head tilting back a little. Not during the
    avatar's own turn (its lips belong to its speech), at most once per ``laugh_refractory_s``."""

    def __init__(self, params: BehaviourParams, fps: int):
        self._p, self._fps = params, fps
        self._held = 0                  # consecutive frames of broad user smile
        self._start: int | None = None
        self._since = 10 ** 9           # frames since the last laugh started

    def step(self, frame: int, user_smile: float | None, avatar_speaking: bool) -> dict[str, float]:
        """Offsets of this frame: smile, jaw_open, squint (eye closure), pitch (degrees)."""
        p, fps = self._p, self._fps
        self._since += 1
        broad = user_smile is not None and user_smile >= p.laugh_smile_threshold
        self._held = self._held + 1 if broad else 0
        if (self._held >= max(1, round(p.laugh_onset_s * fps)) and self._since >= p.laugh_refractory_s * fps
                and not avatar_speaking and p.laugh_smile > 0):
            self._start, self._since = frame, 0
        if self._start is None:
            return {"smile": 0.0, "jaw_open": 0.0, "squint": 0.0, "pitch": 0.0}
        u = (frame - self._start) / (p.laugh_duration_s * fps)
        level = bump(u)
        pulses = 0.5 * (1.0 - math.cos(2.0 * math.pi * p.laugh_rate_hz * (frame - self._start) / fps))
        return {"smile": p.laugh_smile * level, "jaw_open": p.laugh_jaw * level * pulses,
                "squint": p.laugh_squint * level, "pitch": p.laugh_pitch_deg * level}


class GazeAversion:
    """When the avatar starts a turn (a voiced frame after ``aversion_after_silence_s`` of silence),
    its eyes look away, up and to a random side, for ``aversion_s`` (people look away while they
    plan what to say), then come back to the user."""

    def __init__(self, params: BehaviourParams, fps: int, rng: np.random.Generator):
        self._p, self._fps, self._rng = params, fps, rng
        self._start: int | None = None
        self._side = 1.0

    def step(self, frame: int, voiced: bool, silent_frames_before: int) -> tuple[float, float, float]:
        """(weight in [0, 1], gaze_x, gaze_y) of the look-away at this frame."""
        p = self._p
        if voiced and silent_frames_before >= p.aversion_after_silence_s * self._fps and p.aversion_s > 0:
            self._start = frame
            self._side = 1.0 if self._rng.random() < 0.5 else -1.0
        if self._start is None:
            return 0.0, 0.0, 0.0
        u = (frame - self._start) / (p.aversion_s * self._fps)
        weight = 0.0 if not 0.0 <= u <= 1.0 else min(1.0, 4.0 * u, 4.0 * (1.0 - u))   # ramps in/out
        return weight, self._side * p.aversion_gaze[0], p.aversion_gaze[1]


class PostureShift:
    """Every ``posture_interval_s`` (random within the range) the head settles into a new resting
    offset (yaw, pitch, roll within the posture amplitudes), reached with a first-order lag."""

    def __init__(self, params: BehaviourParams, fps: int, rng: np.random.Generator):
        self._p, self._fps, self._rng = params, fps, rng
        self._amp = np.array([params.posture_yaw_deg, params.posture_pitch_deg, params.posture_roll_deg])
        self._target = np.zeros(3)
        self._offset = np.zeros(3)
        self._next = self._interval()

    def _interval(self) -> int:
        low, high = self._p.posture_interval_s
        return max(1, round(self._rng.uniform(low, high) * self._fps))

    def step(self) -> np.ndarray:
        """(3,) yaw, pitch, roll offsets (degrees) of the next frame."""
        self._next -= 1
        if self._next <= 0:
            self._target = self._amp * self._rng.uniform(-1.0, 1.0, size=3)
            self._next = self._interval()
        self._offset += smoothing(self._p.posture_time_constant_s, self._fps) * (self._target - self._offset)
        return self._offset.copy()
