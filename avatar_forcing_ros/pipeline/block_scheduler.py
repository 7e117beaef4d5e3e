"""When may block k be generated, and when is each frame published (DESIGN.md section 3).

Block k covers frames [10k, 10k + 10). It is *ready* once every live input has delivered data
up to the media time of frame 10k + 10 + lookahead (and that media time has come: the generator
never runs ahead of real time, so an input that comes back is used at once). Its *deadline* is the latest start that
still lets it finish before its first frame is due for publication (media time + latency budget),
given the expected compute time, and no earlier than a tenth of a block before its conditions'
media time (one frame of a 10-frame block, none of a 2-frame one);
at the deadline it is generated anyway and whatever has not arrived is absent (the backend's null
condition).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from .clock import SessionClock
from .staleness import StalenessTracker


class Decision(Enum):
    WAIT = "wait"          # conditions still arriving, deadline not reached
    READY = "ready"        # all live conditions have arrived
    DEADLINE = "deadline"  # generate now; missing conditions become absent


@dataclass
class BlockScheduler:
    """Readiness, deadlines and publication times on one session clock."""

    clock: SessionClock
    lookahead_frames: int
    latency_budget_s: float        # target delay between a frame's media time and its publication
    # start this much before the last possible moment: absorbs scheduling spikes the learned lead
    # has not seen yet (10 ms left 4 hold frames in a 10-minute demo on 2 cores, 20 ms 2)
    safety_margin_s: float = 0.02
    tick_tolerance_s: float = 0.005  # a timer tick this much before a frame's time still takes it

    def conditions_time(self, block_index: int) -> float:
        """Media time (s) up to which block `block_index` needs its conditions."""
        end_frame = (block_index + 1) * self.clock.block_frames + self.lookahead_frames
        return self.clock.frame_time(end_frame)

    def publish_time(self, frame_index: int) -> float:
        """Wall time (s) at which frame `frame_index` is due: its media time plus the budget. The
        node puts its timer's ticks on these times (clock.origin_on_ticks)."""
        return self.clock.frame_time(frame_index) + self.latency_budget_s

    def block_publish_time(self, block_index: int) -> float:
        """Wall time (s) at which the first frame of block `block_index` is published."""
        return self.publish_time(block_index * self.clock.block_frames)

    def deadline(self, block_index: int, compute_estimate_s: float) -> float:
        """Latest wall time (s) to start block `block_index` and still publish it on time, given
        the expected time from start to finish (a StartLead), but never earlier than a tenth of
        a block (whole frames) before its conditions' media time. Starting earlier would only
        give up conditions: after a one-off stall the lead is seconds long for a while, and blocks
        would start before their media began; slow compute is the latency controller's to fix.
        A tenth: one frame of a 10-frame block, none of a 2-frame one, whose second frame would
        otherwise lose its conditions (the avatar's mouth closed on every other frame under load)."""
        latest = self.block_publish_time(block_index) - compute_estimate_s - self.safety_margin_s
        early = (self.clock.block_frames // 10) * self.clock.frame_period
        return max(latest, self.conditions_time(block_index) - early)

    def compute_window_s(self) -> float:
        """Compute time (s) a block may take when its conditions arrive in real time."""
        ready = self.conditions_time(0) - self.clock.t0
        return self.publish_time(0) - self.clock.t0 - ready - self.safety_margin_s

    def decide(self, block_index: int, now: float, inputs: StalenessTracker,
               compute_estimate_s: float) -> Decision:
        """Whether block `block_index` should be generated now."""
        needed = self.conditions_time(block_index)
        # Never run ahead of real time: an input that is absent now may come back by then.
        if now >= needed - self.clock.frame_period and inputs.conditions_arrived(needed, now):
            return Decision.READY
        if now >= self.deadline(block_index, compute_estimate_s):
            return Decision.DEADLINE
        return Decision.WAIT

    def frames_due(self, next_frame: int, now: float) -> range:
        """Frames from `next_frame` on whose publication time has come."""
        last = math.floor((now + self.tick_tolerance_s - self.publish_time(0)) * self.clock.fps + 1e-9)
        return range(next_frame, max(next_frame, last + 1))


@dataclass
class StartLead:
    """How long before its first frame is due a block must start: a peak follower of the time
    from each block's intended start (its deadline, or the moment it became ready) to the end of
    its compute. Scheduling delays on a busy CPU count as much as compute, and a spike raises the
    lead at once while it decays over a few seconds, so blocks start early enough to finish."""

    value_s: float = 0.05          # start-up guess, before any block was measured
    decay: float = 0.95            # per block: half-life about 13 blocks (5 s at 25 fps, 10-frame blocks)

    def update(self, start_to_finish_s: float) -> None:
        self.value_s = max(start_to_finish_s, self.decay * self.value_s)
