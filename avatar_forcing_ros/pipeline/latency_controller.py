"""Keeps block compute inside the latency budget by trading quality for speed, with hysteresis.

The quality ladder, best first: NFE from `nfe_max` down to `nfe_min` in steps of `nfe_step`
with all 3 guidance branches, then guidance branches 3 -> 2 -> 1 at `nfe_min`. After each block
the controller compares its compute time with the compute window (latency budget minus the
time the block's conditions take to arrive): a block that overran the window, or finished after
its first frame was due, steps one rung down. It steps one rung up only after `up_patience`
consecutive blocks whose compute, scaled to the next rung's cost (the backend's `block_cost`),
would still fit in `up_fraction` of the window. Every change is returned once as a message for
the log.

The NFE bounds are the backend's (`MotionBackend.nfe_range`), so no rung is a setting the
backend refuses. A backend without NFE gets a one-rung ladder (0 NFE, 0 branches): nothing to
trade, no change, no message.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .generator_config import check_nfe

Cost = Callable[[int, int], float]     # (nfe, guidance_branches) -> relative compute time


@dataclass(frozen=True)
class QualityLevel:
    nfe: int
    guidance_branches: int


NO_QUALITY_LEVELS = QualityLevel(0, 0)   # the one rung of a backend without NFE


def build_ladder(nfe_max: int, nfe_min: int, nfe_step: int,
                 nfe_range: tuple[int, int] | None) -> list[QualityLevel]:
    """Rungs best-first: NFE steps at 3 branches, then 2 and 1 branch at `nfe_min`; every rung
    inside the backend's `nfe_range` (ValueError otherwise)."""
    if nfe_step < 1:
        raise ValueError(f"nfe_step must be >= 1, got {nfe_step}")
    if nfe_range is None:
        return [NO_QUALITY_LEVELS]
    check_nfe(nfe_max, nfe_min, nfe_range)
    nfes = list(range(nfe_max, nfe_min, -nfe_step)) + [nfe_min]
    return [QualityLevel(n, 3) for n in nfes] + [QualityLevel(nfe_min, 2), QualityLevel(nfe_min, 1)]


class LatencyController:
    """Chooses the quality level of the next block from the compute times of past blocks."""

    def __init__(self, nfe_max: int, nfe_min: int, nfe_step: int, *, nfe_range: tuple[int, int] | None,
                 cost: Cost, up_fraction: float = 0.6, up_patience: int = 3):
        """`nfe_range` and `cost`: the backend's `nfe_range` and `block_cost`."""
        if not 0.0 < up_fraction < 1.0 or up_patience < 1:
            raise ValueError("up_fraction must be in (0, 1) and up_patience >= 1")
        self._nfe_step = nfe_step
        self._nfe_range = nfe_range
        self._cost = cost
        self._up_fraction = up_fraction
        self._up_patience = up_patience
        self._ladder = build_ladder(nfe_max, nfe_min, nfe_step, nfe_range)
        self._rung = 0
        self._good_blocks = 0

    @property
    def level(self) -> QualityLevel:
        return self._ladder[self._rung]

    def set_nfe_range(self, nfe_max: int, nfe_min: int) -> str | None:
        """Run-time change of the NFE range; restarts at the top of the new ladder."""
        old = self.level
        self._ladder = build_ladder(nfe_max, nfe_min, self._nfe_step, self._nfe_range)
        self._rung = 0
        self._good_blocks = 0
        return self._describe(old, "NFE range changed")

    def update(self, compute_s: float, window_s: float, finished_late: bool) -> str | None:
        """Account for one block; returns a message if the level changed, else None."""
        old = self.level
        if finished_late or compute_s > window_s:
            self._good_blocks = 0
            if self._rung < len(self._ladder) - 1:
                self._rung += 1
                reason = ("late block" if finished_late
                          else f"compute {compute_s * 1e3:.0f} ms > window {window_s * 1e3:.0f} ms")
                return self._describe(old, reason)
            return None
        if self._rung == 0:
            return None
        up = self._ladder[self._rung - 1]
        predicted = compute_s * self._cost(up.nfe, up.guidance_branches) / self._cost(old.nfe, old.guidance_branches)
        self._good_blocks = self._good_blocks + 1 if predicted <= self._up_fraction * window_s else 0
        if self._good_blocks >= self._up_patience:
            self._good_blocks = 0
            self._rung -= 1
            return self._describe(old, f"headroom: {compute_s * 1e3:.0f} ms of {window_s * 1e3:.0f} ms")
        return None

    def _describe(self, old: QualityLevel, reason: str) -> str | None:
        new = self.level
        if new == old:
            return None
        return (f"quality {old.nfe} NFE/{old.guidance_branches} branches -> "
                f"{new.nfe} NFE/{new.guidance_branches} branches ({reason})")
