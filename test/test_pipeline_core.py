"""GeneratorCore with a fake backend, in real time (wide bounds): frame order, input placement on
the session timeline, stale inputs, and the latency controller under an injected compute delay."""
import threading
import time

import numpy as np
import pytest

from avatar_forcing_ros.pipeline.generator_config import GeneratorConfig
from avatar_forcing_ros.pipeline.generator_core import GeneratorCore, GeneratorSnapshot

from avatar_forcing_ros.portable.behaviour import PortableBackend
from pipeline_fakes import FakeBackend


def _run(core, seconds, feed=None):
    frames, end = [], time.time() + seconds
    while time.time() < end:
        if feed:
            feed()
        frames += core.due_frames()
        time.sleep(0.02)
    return frames


def test_core_publishes_consecutive_frames_and_places_inputs():
    backend = FakeBackend()
    events = []
    core = GeneratorCore(backend, GeneratorConfig(latency_budget_ms=700, use_camera=True),
                         on_event=events.append)
    core.start()
    t0 = core.clock.t0
    core.submit_avatar_audio(np.zeros((1600, 2), np.float32), 48000, t0 + 0.1)   # stereo 48 kHz
    core.submit_user_audio(np.zeros(800, np.float32), 16000, t0 - 0.02)           # starts before t0
    core.submit_camera(np.zeros((8, 8, 3), np.uint8), t0 + 0.081)
    frames = _run(core, 3.0)
    core.stop()
    idx = [p.frame.frame_index for p in frames]
    assert idx == list(range(len(idx))) and 40 <= len(idx) <= 75          # ~25 Hz over ~2.3 s (3 s - budget)
    for p in frames:
        assert abs(p.media_time - (t0 + p.frame.frame_index / 25)) < 1e-9
    generated = [p for p in frames if not p.frame.is_hold]
    assert generated and all(p.frame.latent[0] == p.frame.frame_index for p in generated)
    (start, length), = backend.audio["avatar"]                              # 0.1 s at 16 kHz, resampled
    assert start == 1600 and abs(length - 533) <= 1
    assert backend.audio["user"] == [(0, 480)]                             # trimmed to t >= t0
    assert backend.frames == [2]
    snap = core.snapshot()
    assert snap.stale["camera"] and snap.ages["camera"] > 1.0                 # silent for > 0.5 s
    assert snap.frames_published == len(idx) and snap.backend_errors == 0


def test_compute_delay_steps_quality_down_then_back_up():
    events = []
    backend = FakeBackend(compute_s=0.25)
    core = GeneratorCore(backend, GeneratorConfig(latency_budget_ms=600, nfe=10, nfe_min=6),
                         on_event=events.append)
    core.start()
    _run(core, 3.0)                    # window = 600 - 20 - 480 - 10 = 90 ms < 250 ms
    low = core.snapshot()
    assert (low.nfe, low.guidance_branches) == (6, 1)
    assert low.hold_frames > 0 and low.late_blocks > 0
    backend.compute_s = 0.0
    _run(core, 8.0)
    high = core.snapshot()
    core.stop()
    assert high.nfe == 10 and high.guidance_branches == 3
    assert any("-> 8 NFE" in e for e in events) and any("headroom" in e for e in events)


class _SlowPortable(PortableBackend):
    def generate_block(self, block_index, settings):
        time.sleep(0.125 * self.block_frames)   # 8 frames/s of compute: overloaded, never stopped
        return super().generate_block(block_index, settings)


def test_a_backend_without_nfe_is_never_stepped_or_logged_in_nfe():
    """The portable backend has no NFE: an overload makes hold frames, but no 'quality 10
    NFE/3 branches -> 8' change, and the status reports 0 NFE / 0 branches as its frames do."""
    events = []
    core = GeneratorCore(_SlowPortable(), GeneratorConfig(latency_budget_ms=600, nfe=10, nfe_min=6),
                         on_event=events.append)
    core.start()
    frames = _run(core, 3.0)
    snap = core.snapshot()
    core.stop()
    assert snap.late_blocks + snap.skipped_blocks > 0 and snap.hold_frames > 0, snap
    # overload events say which blocks were skipped; none speaks of a quality (NFE) change
    assert not [e for e in events if "NFE" in e or "quality" in e], events
    assert (snap.nfe, snap.guidance_branches) == (0, 0)
    assert {(p.frame.nfe, p.frame.guidance_branches) for p in frames if not p.frame.is_hold} == {(0, 0)}


def test_snapshot_says_what_perception_sees():
    """The portable backend's real face perception: a face, then frames without one."""
    from pipeline_ros_helpers import face_frame
    core = GeneratorCore(PortableBackend(), GeneratorConfig(latency_budget_ms=700))
    core.start()

    def feed_until(frame, condition, timeout=20.0):
        end = time.time() + timeout
        while time.time() < end:
            core.submit_camera(frame, time.time())
            snap = core.snapshot()
            if condition(snap):
                return snap
            time.sleep(0.04)
        raise AssertionError(f"perception never reached the expected state: {snap}")

    try:
        # (the first frame waits for MediaPipe's start-up: its face is seconds old when found)
        seen = feed_until(face_frame(), lambda s: 0.0 <= s.last_face_age_s < 1.0)
        assert seen.face_found_fraction == 1.0
        blank = np.full((256, 256, 3), 128, np.uint8)
        away = feed_until(blank, lambda s: s.last_face_age_s > 1.0)
        assert 0.0 < away.face_found_fraction < 1.0       # both kinds of frames in the last 5 s
    finally:
        core.stop()


class _GatedPerception(FakeBackend):
    """Perception that blocks until the test opens the gate, and records its thread."""

    def __init__(self):
        super().__init__()
        self.entered, self.gate, self.threads = threading.Event(), threading.Event(), set()

    def perceive_user_frame(self, frame_rgb):
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.gate.wait(10)
        return frame_rgb


def _wait_for(condition, timeout=10.0):
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    return condition()


def test_perception_runs_beside_the_worker_on_the_newest_camera_frame_only():
    """Blocks go on while perception is stuck; frames queued meanwhile: only the newest is
    perceived, the others (and a repeated frame index) are counted; all audio is kept."""
    backend = _GatedPerception()
    core = GeneratorCore(backend, GeneratorConfig(latency_budget_ms=700, use_avatar_audio=False))
    core.start()
    t0 = core.clock.t0
    core.submit_camera(np.zeros((4, 4, 3), np.uint8), t0)
    assert backend.entered.wait(10)                      # frame 0 is being perceived, and stays so
    for i in range(1, 5):
        core.submit_camera(np.zeros((4, 4, 3), np.uint8), t0 + 0.04 * i)
    for i in range(5):
        core.submit_user_audio(np.zeros(640, np.float32), 16000, t0 + 0.04 * i)
    # the worker is not held up by perception: blocks are made at their deadlines meanwhile
    assert _wait_for(lambda: core.snapshot().blocks_generated >= 2), core.snapshot()
    assert backend.frames == []
    backend.gate.set()
    assert _wait_for(lambda: backend.frames == [0, 4]), backend.frames
    core.submit_camera(np.zeros((4, 4, 3), np.uint8), t0 + 0.161)      # frame 4 again
    assert _wait_for(lambda: core.snapshot().camera_frames_skipped == 4), core.snapshot()
    core.stop()
    assert backend.frames == [0, 4] and len(backend.audio["user"]) == 5
    assert backend.threads == {"generator-perception"}


def test_warm_up_runs_the_backend_once_then_resets_it():
    backend = FakeBackend()
    core = GeneratorCore(backend, GeneratorConfig(use_user_audio=False))
    assert core.warm_up() >= 0.0
    assert backend.frames == [0] and backend.audio["avatar"] == [(0, 16000)] and backend.audio["user"] == []
    assert backend.calls == []          # FakeBackend.reset clears its call log: the session starts clean


class _FailingBackend(FakeBackend):
    def generate_block(self, block_index, settings):
        if block_index == 1:
            raise RuntimeError("model exploded")
        return super().generate_block(block_index, settings)


def test_a_failing_block_costs_its_frames_not_the_stream():
    core = GeneratorCore(_FailingBackend(), GeneratorConfig(latency_budget_ms=600))
    core.start()
    frames = _run(core, 2.5)
    core.stop()
    by_index = {p.frame.frame_index: p.frame for p in frames}
    assert all(by_index[n].is_hold for n in range(10, 20))                    # block 1 failed: holds
    assert not by_index[25].is_hold and by_index[25].latent[0] == 25         # block 2 generated again
    snap = core.snapshot()
    assert snap.backend_errors == 1 and "block 1: RuntimeError: model exploded" in core.last_error


def test_inputs_stamped_on_another_clock_are_counted_not_taken_as_fresh():
    backend = FakeBackend()
    core = GeneratorCore(backend, GeneratorConfig(latency_budget_ms=700, use_camera=True))
    core.start()
    uptime_like = 12_345.0                                  # e.g. a sender stamping with a monotonic clock
    core.submit_user_audio(np.zeros(320, np.float32), 16000, uptime_like)
    core.submit_avatar_audio(np.zeros(320, np.float32), 16000, core.clock.t0 + 3600.0)
    core.submit_camera(np.zeros((8, 8, 3), np.uint8), uptime_like)
    time.sleep(0.7)                                         # past the 0.5 s staleness timeouts
    snap = core.snapshot()
    core.stop()
    assert snap.misstamped_inputs == 3
    assert all(snap.stale.values())                         # they did not count as received
    assert backend.audio["user"] == [] and backend.audio["avatar"] == [] and backend.frames == []


def test_generator_snapshot_is_built_with_keywords_only():
    fields = GeneratorSnapshot.__dataclass_fields__
    with pytest.raises(TypeError):
        GeneratorSnapshot(*range(len(fields)))
    snap = GeneratorCore(FakeBackend(), GeneratorConfig()).snapshot()
    assert set(vars(snap)) == set(fields)


def test_compute_slower_than_real_time_still_publishes_generated_frames():
    """0.8 s per 400 ms block within a 1.5 s budget: in order, the worker falls further behind with
    every block and after the first ones every block finishes after all its frames' times (all
    holds from then on). Blocks that cannot finish in time are skipped, so later ones still land."""
    backend = FakeBackend(compute_s=0.8)
    events = []
    core = GeneratorCore(backend, GeneratorConfig(latency_budget_ms=1500, nfe=10, nfe_min=10),
                         on_event=events.append)
    core.start()
    frames = _run(core, 9.0)
    snap = core.snapshot()
    core.stop()
    idx = [p.frame.frame_index for p in frames]
    assert idx == list(range(len(idx))) and len(idx) > 150            # 25 Hz, holds where needed
    generated = [p.frame.frame_index for p in frames if not p.frame.is_hold]
    assert all(p.frame.latent[0] == p.frame.frame_index for p in frames if not p.frame.is_hold)
    assert any(i > 100 for i in generated), generated                 # still generating 4 s in
    assert snap.skipped_blocks > 0 and any("skipped blocks" in e for e in events)
    called = [b for b, _ in backend.calls]
    assert called == sorted(called) and len(called) < max(called) + 1    # gaps: not every block


def test_compute_longer_than_the_budget_keeps_generating_the_newest_block():
    """1 s per block with a 600 ms budget: no block can be on time. The worker neither falls
    behind for good nor stops generating: it generates the newest block each time it is free (the
    lead stays measured, the model current), with one log line per skip, not one per block."""
    backend = FakeBackend(compute_s=1.0)
    events = []
    core = GeneratorCore(backend, GeneratorConfig(latency_budget_ms=600, nfe=10, nfe_min=10),
                         on_event=events.append)
    core.start()
    _run(core, 7.0)
    core.stop()
    called = [b for b, _ in backend.calls]
    assert len(called) >= 4 and called[-1] >= 10, called      # in order it would be ~block 6
    assert 0 < sum("skipped blocks" in e for e in events) <= len(called)
