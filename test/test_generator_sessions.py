"""One generator process serving several sessions (parameter 'sessions', portable backend, real
DDS): independent inputs and outputs per namespace on one block grid, run-time join and leave,
and a failing session's backend that does not stop the others. Wide timing bounds."""
import os
import time
from pathlib import Path

import numpy as np
import pytest

import rclpy  # noqa: F401  (installed by the set-up: its absence fails, never skips)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile

from avatar_forcing_ros.conversions import array_to_audio_chunk
from avatar_forcing_ros.msg import AudioChunk, MotionLatent
from avatar_forcing_ros.nodes.generator_session import aligned_origin, check_session_names, session_topic
from avatar_forcing_ros.portable.behaviour import BLOCK_FRAMES
from avatar_forcing_ros.portable.motion_space import INDEX
from pipeline_ros_helpers import received_between, set_parameters, stamp_ns, wait
from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id

FRAME_NS = 40_000_000
BLOCK_NS = BLOCK_FRAMES * FRAME_NS   # the portable backend's blocks
TEST_DIR = Path(__file__).resolve().parent
# the avatar's speech is the only input: no camera perception, no user audio (cheap and deterministic)
PARAMS = {"backend": "portable", "use_camera": False, "use_user_audio": False, "latency_budget_ms": 500.0}


class AvatarSpeech:
    """Publishes avatar audio on `<session>/avatar/audio` at 25 Hz: syllable-like bursts (4 Hz
    envelope over noise) where `speaking`, silence elsewhere."""

    def __init__(self, node, speaking: dict[str, bool], rate: int = 16000) -> None:
        self._pubs = {s: node.create_publisher(AudioChunk, session_topic(s, "avatar/audio"), 50) for s in speaking}
        self._speaking, self._rate, self._seq = speaking, rate, 0
        self._rng = np.random.default_rng(0)
        self._clock = node.get_clock()
        node.create_timer(0.04, self._tick)

    def _tick(self) -> None:
        now = self._clock.now().nanoseconds
        t = now * 1e-9 + np.arange(self._rate // 25) / self._rate
        speech = (0.3 * np.maximum(np.sin(2 * np.pi * 4 * t), 0) * self._rng.standard_normal(t.size))
        for session, pub in self._pubs.items():
            samples = speech if self._speaking[session] else np.zeros_like(speech)
            pub.publish(array_to_audio_chunk(samples.astype(np.float32), self._rate, now, self._seq, "tts"))
        self._seq += 1


def _rate(messages: list, start: float, end: float) -> float:
    return len(received_between(messages, start, end)) / (end - start)


def _max_gap(messages: list, start: float, end: float) -> float:
    arrivals = [t for _, t in messages if start <= t < end]
    return max(np.diff(arrivals)) if len(arrivals) > 1 else float("inf")


def _collect(lis, sessions):
    return {s: lis.collect(MotionLatent, session_topic(s, "avatar/motion"), QoSProfile(depth=100),
                           with_arrival=True) for s in sessions}


def test_session_names_and_block_grid_unit():
    check_session_names(["robot1", "robot_2", "R"])
    for bad in (["1robot"], ["a/b"], ["a__b"], ["a_"], [""], ["a", "a"]):
        with pytest.raises(ValueError):
            check_session_names(bad)
    assert session_topic("robot1", "avatar/motion") == "robot1/avatar/motion"
    assert session_topic("", "avatar/motion") == "avatar/motion"
    grid = 1_000_000_123
    for now in (grid, grid + 1, grid + BLOCK_NS - 1, grid + 7 * BLOCK_NS + 5):
        t0 = aligned_origin(grid, now, BLOCK_NS)
        assert t0 <= now < t0 + BLOCK_NS and (t0 - grid) % BLOCK_NS == 0


def test_two_sessions_independent_inputs_on_one_block_grid():
    domain = unique_domain_id()
    with NodeProcess("generator", ros_env(domain), {**PARAMS, "sessions": ["a", "b"]}) as gen, \
            Listener(domain) as lis:
        latents = _collect(lis, "ab")
        diagnostics = lis.collect(DiagnosticArray, "/diagnostics", 10)
        AvatarSpeech(lis.node, {"a": True, "b": False})
        assert lis.spin_until(lambda: all(len(v) > 25 for v in latents.values()), 60), gen.output()
        start = time.monotonic()
        wait(lis, 4.0)
        end = start + 4.0
        for s in "ab":
            assert 20 <= _rate(latents[s], start, end) <= 30, (s, _rate(latents[s], start, end))
        assert lis.spin_until(lambda: any(len(d.status) == 2 for d in diagnostics), 5)
        assert gen.interrupt() == 0
        out = gen.output()
    assert "Traceback" not in out, out
    names = sorted(st.name for st in diagnostics[-1].status)
    assert names == ["generator: motion generation (a)", "generator: motion generation (b)"]
    jaw = {s: np.array([m.latent[INDEX["jaw_open"]] for m, t in latents[s] if start <= t < end]) for s in "ab"}
    assert np.ptp(jaw["a"]) > 0.1 and np.ptp(jaw["b"]) < 0.2 * np.ptp(jaw["a"]), (np.ptp(jaw["a"]), np.ptp(jaw["b"]))
    # both sessions' frame 0 (t0 = stamp - n / fps) lie a whole number of blocks apart
    t0 = {s: stamp_ns(latents[s][0][0]) - latents[s][0][0].frame_index * FRAME_NS for s in "ab"}
    assert (t0["a"] - t0["b"]) % BLOCK_NS == 0, t0
    for s in "ab":
        assert all(stamp_ns(m) == t0[s] + m.frame_index * FRAME_NS for m, _ in latents[s])


def test_sessions_join_and_leave_at_run_time():
    domain = unique_domain_id()
    with NodeProcess("generator", ros_env(domain), {**PARAMS, "sessions": ["a"]}) as gen, Listener(domain) as lis:
        latents = _collect(lis, "ab")
        AvatarSpeech(lis.node, {"a": True, "b": True})
        assert lis.spin_until(lambda: len(latents["a"]) > 25, 60), gen.output()
        assert not latents["b"]
        joined = time.monotonic()
        assert all(r.successful for r in set_parameters(lis, "generator", sessions=["a", "b"]))
        assert lis.spin_until(lambda: len(latents["b"]) > 25, 10), gen.output()
        wait(lis, 2.0)
        both = time.monotonic()
        # a goes on at its rate, without a gap, while b joins
        assert 20 <= _rate(latents["a"], joined, both) <= 30 and _max_gap(latents["a"], joined, both) < 0.5
        index = [m.frame_index for m, _ in latents["a"]]
        assert index == list(range(index[0], index[0] + len(index)))
        rejected = set_parameters(lis, "generator", sessions=["b", "b"])
        assert not rejected[0].successful and "twice" in rejected[0].reason
        assert all(r.successful for r in set_parameters(lis, "generator", sessions=["b"]))
        wait(lis, 1.5)
        left = time.monotonic()
        wait(lis, 3.0)
        end = time.monotonic()
        assert not received_between(latents["a"], left, end)
        assert 20 <= _rate(latents["b"], left, end) <= 30
        assert gen.interrupt() == 0
        out = gen.output()
    assert "Traceback" not in out, out
    assert "session 'b' joined" in out and "session 'a' left" in out


def test_failing_session_does_not_stop_the_other():
    domain = unique_domain_id()
    env = ros_env(domain, {"PYTHONPATH": os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")])})
    params = {**PARAMS, "backend": "failing_session_backend:FailingSessionBackend", "sessions": ["a", "b"]}
    with NodeProcess("generator", env, params) as gen, Listener(domain) as lis:
        latents = _collect(lis, "ab")
        diagnostics = lis.collect(DiagnosticArray, "/diagnostics", 10)
        AvatarSpeech(lis.node, {"a": True, "b": True})
        assert lis.spin_until(lambda: len(latents["a"]) > 25, 60), gen.output()
        start = time.monotonic()
        wait(lis, 4.0)
        end = time.monotonic()
        generated = [m for m in received_between(latents["a"], start, end) if not m.is_hold]
        assert len(generated) >= 0.75 * 25 * (end - start), len(generated)
        # b's backend (seed 1) fails in every block: b holds its pose and says why
        assert all(m.is_hold for m in received_between(latents["b"], start, end))
        failing = [st for d in diagnostics for st in d.status if st.name.endswith("(b)") and st.level == DiagnosticStatus.ERROR]
        assert failing and "injected failure" in failing[-1].message
        ok = [st for d in diagnostics for st in d.status if st.name.endswith("(a)")]
        assert ok[-1].level != DiagnosticStatus.ERROR, ok[-1]
        assert gen.process.poll() is None
        assert gen.interrupt() == 0


def test_bad_sessions_fail_fast_with_one_line():
    env = ros_env(unique_domain_id(), {"PYTHONPATH": os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")])})
    single = {**PARAMS, "backend": "failing_session_backend:SingleSessionBackend"}
    cases = [({**PARAMS, "sessions": ["a", "a"]}, "parameter 'sessions': session name 'a' is given twice"),
             ({**PARAMS, "sessions": ["1a"]}, "session name '1a' is not a ROS namespace token"),
             ({**single, "sessions": ["a", "b"]}, "cannot serve several sessions")]
    procs = [(NodeProcess("generator", env, params), text) for params, text in cases]
    for proc, text in procs:
        assert proc.wait(120) == 2, proc.output()
        out = proc.output()
        assert text in out and "Traceback" not in out, out


def test_neural_sessions_share_the_model_and_batch_their_blocks(tmp_path):
    """The neural backend (parity-tiny random weights in the release layout) serving two
    sessions: both publish generated frames, and their steady-state blocks ran as batches
    (`batched_blocks` in each session's /diagnostics)."""
    import cv2
    from release_layout import write_release_layout
    from skimage import data
    portrait = tmp_path / "portrait.png"
    cv2.imwrite(str(portrait), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    params = {**PARAMS, "backend": "avatar_forcing", "checkpoint_dir": str(write_release_layout(tmp_path / "r")),
              "portrait": str(portrait), "nfe": 4, "nfe_min": 4, "latency_budget_ms": 800.0,
              "sessions": ["a", "b"]}
    domain = unique_domain_id()

    def batched(d: DiagnosticArray) -> dict[str, int]:
        return {st.name[-2]: int(next(v.value for v in st.values if v.key == "batched_blocks")) for st in d.status}

    with NodeProcess("generator", ros_env(domain), params) as gen, Listener(domain) as lis:
        latents = _collect(lis, "ab")
        diagnostics = lis.collect(DiagnosticArray, "/diagnostics", 10)
        AvatarSpeech(lis.node, {"a": True, "b": True})
        assert lis.spin_until(lambda: any(len(d.status) == 2 and min(batched(d).values()) >= 3
                                          for d in diagnostics), 90), gen.output()
        assert gen.interrupt() == 0
        out = gen.output()
    assert "Traceback" not in out, out
    for s in "ab":
        assert sum(not m.is_hold for m, _ in latents[s]) >= 50, s     # 5 blocks of 10 generated frames
    a = np.array([m.latent for m, _ in latents["a"] if not m.is_hold][-10:])
    b = np.array([m.latent for m, _ in latents["b"] if not m.is_hold][-10:])
    assert not np.allclose(a, b)        # own noise seeds: two sessions, not one copied
