"""Per-input freshness: when each input last arrived, how far its data reaches on the media
timeline, and whether it is stale (absent: the model then gets its null condition).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class InputState:
    """Freshness of one input stream (camera, user audio or avatar audio)."""

    name: str
    timeout_s: float           # older than this -> stale (absent)
    enabled: bool = True       # a disabled input is always absent and never waited for
    last_receive: float = -math.inf   # wall time of the newest message (s)
    covered_until: float = -math.inf  # media time up to which data has arrived (s)
    messages: int = 0

    def received(self, receive_time: float) -> None:
        """A message arrived (freshness: the stream is alive)."""
        self.last_receive = receive_time
        self.messages += 1

    def delivered(self, covered_until: float) -> None:
        """A message's data, reaching media time `covered_until`, is now usable (readiness). The
        generator calls this once the data is in the backend, which can be after perception."""
        self.covered_until = max(self.covered_until, covered_until)

    def age(self, now: float) -> float:
        """Seconds since the newest message; -1 if none ever arrived (GeneratorStatus convention)."""
        return -1.0 if self.messages == 0 else max(0.0, now - self.last_receive)

    def is_stale(self, now: float) -> bool:
        """Absent: disabled, never received, or silent for longer than the timeout."""
        return (not self.enabled) or self.messages == 0 or now - self.last_receive > self.timeout_s


@dataclass
class StalenessTracker:
    """The three inputs of the generator, by name."""

    inputs: dict[str, InputState] = field(default_factory=dict)

    def add(self, name: str, timeout_s: float, enabled: bool = True) -> None:
        if timeout_s <= 0:
            raise ValueError(f"staleness timeout of {name} must be > 0 s, got {timeout_s}")
        self.inputs[name] = InputState(name, timeout_s, enabled)

    def __getitem__(self, name: str) -> InputState:
        return self.inputs[name]

    def stale_names(self, now: float) -> list[str]:
        """Enabled inputs that are stale right now (disabled ones are absent by configuration)."""
        return [s.name for s in self.inputs.values() if s.enabled and s.is_stale(now)]

    def conditions_arrived(self, media_time: float, now: float) -> bool:
        """True when every live (enabled, fresh) input has data up to `media_time`."""
        return all(s.covered_until >= media_time for s in self.inputs.values() if not s.is_stale(now))
