"""Unbounded sessions: past the reference's 1024-frame RoPE limit, and 3000 frames without growth."""
import os
import time

import torch

from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator
from core_generator_fixtures import one_thread, tiny_transformer  # noqa: F401 (autouse)



class ShiftedRope:
    """RoPE at positions + offset: lets a test run the generator at absolute frame positions."""

    def __init__(self, inner):
        self.inner, self.offset = inner, 0

    def __call__(self, positions, dtype=torch.float32):
        return self.inner(positions.double().add(self.offset), dtype)


def _session(frames: int, absolute_positions: bool = False) -> tuple[StreamingGenerator, torch.Tensor]:
    torch.manual_seed(7)
    gen = StreamingGenerator(tiny_transformer(), torch.randn(1, 64), NoiseSource(seed=3))
    feats = torch.randn(3, frames, 64)
    gen.push_avatar_audio(0, feats[0])
    gen.push_user_audio(0, feats[1])
    gen.push_user_motion(0, feats[2])
    if absolute_positions:
        rope = gen.model.rope = ShiftedRope(gen.model.rope)
        run = gen._run_window

        def run_at_absolute_positions(start, x, *args):
            rope.offset = start - gen.cache.length     # first cached frame's absolute index
            return run(start, x, *args)
        gen._run_window = run_at_absolute_positions
    return gen, feats


def test_rebased_positions_equal_absolute_positions_past_1024_frames():
    """The reference's table stops at 1024 positions; scores depend only on position
    differences, so window-relative positions give the absolute-position result."""
    frames = 1040                                   # the last window reaches position 1049
    rebased, _ = _session(frames)
    absolute, _ = _session(frames, absolute_positions=True)
    worst = 0.0
    for block in range(frames // 10):
        a, b = rebased.generate_block(block), absolute.generate_block(block)
        worst = max(worst, (a - b).abs().max().item())
    assert absolute.model.rope.offset + 50 > 1024
    assert worst < 1e-3, worst


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_3000_frame_session_without_growth():
    gen, _ = _session(3000)
    times, rss = [], []
    for block in range(300):
        start = time.perf_counter()
        out = gen.generate_block(block)
        times.append(time.perf_counter() - start)
        rss.append(_rss_mb())
        assert out.shape == (10, 64) and torch.isfinite(out).all()
        assert gen.cache.length <= 38
        assert all(len(t.frames) <= 3000 - 10 * block for t in gen.tracks.values())
    assert all(len(t.frames) <= 12 for t in gen.tracks.values())
    early = sorted(times[10:60])[25]
    late = sorted(times[-50:])[25]
    assert late < 3 * early + 0.01, (early, late)           # wide bound: no growth in step time
    assert rss[-1] - rss[50] < 100, (rss[50], rss[-1])       # MB; wide bound: no growth in memory
