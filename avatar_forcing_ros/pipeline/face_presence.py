"""What camera perception sees: in how many recent camera frames it found a face, and since
when it has found none. Reported in GeneratorStatus, /diagnostics and the evaluation summary, so
that a user can tell "the avatar does not react" from "the camera sees no face".

Only frames perception analysed count (a frame replaced by a newer one before perception got to
it is counted elsewhere, as skipped). Not thread-safe: the generator core calls it under its lock.
"""
from __future__ import annotations

import math
from collections import deque

DEFAULT_WINDOW_S = 5.0


class FacePresence:
    """Face found / not found per perceived camera frame, by capture time (s)."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._recent: deque[tuple[float, bool]] = deque()   # (capture time, face found)
        self._last_face = -math.inf                          # capture time of the last face (s)

    def record(self, stamp: float, found: bool) -> None:
        """Perception analysed the frame captured at `stamp` and found a face or not."""
        self._recent.append((stamp, found))
        if found:
            self._last_face = max(self._last_face, stamp)
        self._drop_before(stamp - self.window_s)

    def found_fraction(self, now: float) -> float:
        """Fraction of the frames captured in the last `window_s` before `now` with a face;
        NaN when perception analysed none in that time."""
        self._drop_before(now - self.window_s)
        if not self._recent:
            return math.nan
        return sum(found for _, found in self._recent) / len(self._recent)

    def last_face_age(self, now: float) -> float:
        """Seconds from the capture of the last frame with a face to `now`; -1 if none yet."""
        return now - self._last_face if math.isfinite(self._last_face) else -1.0

    def _drop_before(self, start: float) -> None:
        while self._recent and self._recent[0][0] < start:
            self._recent.popleft()
