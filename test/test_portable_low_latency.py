"""The low-latency mode: the portable backend declares 1-frame blocks, the generator schedules
them, a 100 ms budget (the generator's floor) is accepted, and the avatar's lips stay in sync
with its own speech when each block sees only the audio that has arrived by its conditions'
media time."""
import threading
import time

import numpy as np
import pytest
import soundfile
import yaml

from avatar_forcing_ros.backends.base import GenerationSettings
from avatar_forcing_ros.evaluation.metrics.lipsync import lipsync
from avatar_forcing_ros.evaluation.session import AudioSeries, MotionSeries
from avatar_forcing_ros.pipeline.clock import SessionClock
from avatar_forcing_ros.pipeline.generator_config import GeneratorConfig, check_latency_budget
from avatar_forcing_ros.pipeline.generator_core import GeneratorCore
from avatar_forcing_ros.pipeline.block_scheduler import BlockScheduler
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.behaviour import PortableBackend
from avatar_forcing_ros.tools.demo import write_demo_parameters
from avatar_forcing_ros.tools.demo_media import AVATAR_LINES, speak

SR, FPS, SPF = 16000, 25, 640
LOW_LATENCY_BUDGET_MS = 100.0


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """Real synthetic speech (espeak-ng, the demo's avatar lines), 16 kHz mono float32."""
    path = tmp_path_factory.mktemp("speech") / "avatar.wav"
    speak(AVATAR_LINES[:2], "en-us", path)
    samples, rate = soundfile.read(path, dtype="float32")
    assert rate == SR
    return samples


def test_portable_blocks_are_short_enough_for_a_100_ms_budget():
    backend = PortableBackend()
    assert backend.block_frames == 1 and backend.lookahead_frames == 0
    check_latency_budget(LOW_LATENCY_BUDGET_MS, backend.block_frames, backend.lookahead_frames, backend.fps)
    with pytest.raises(ValueError, match="must be in"):          # a 10-frame block needs 440 ms
        check_latency_budget(LOW_LATENCY_BUDGET_MS, 10, 0, FPS)
    scheduler = BlockScheduler(SessionClock(0.0, FPS, backend.block_frames), 0, LOW_LATENCY_BUDGET_MS / 1e3)
    assert scheduler.conditions_time(0) == pytest.approx(0.04)
    assert scheduler.compute_window_s() > 0.0                    # room to compute after the conditions


def test_a_deadline_start_never_gives_up_the_second_frame_of_a_short_block():
    """After stalls the learned lead is long and blocks start at their deadline's floor: for a
    2-frame block that is its conditions' media time itself (a frame earlier, the second frame's
    avatar speech had not arrived and the live demo's lip-sync fell to r 0.41); 10-frame blocks
    keep their one frame."""
    short = BlockScheduler(SessionClock(0.0, FPS, 2), 0, 0.12)
    assert short.deadline(7, compute_estimate_s=0.5) == pytest.approx(short.conditions_time(7))
    assert short.deadline(7, compute_estimate_s=0.001) == pytest.approx(7 * 0.08 + 0.12 - 0.001 - 0.02)
    long = BlockScheduler(SessionClock(0.0, FPS, 10), 0, 0.44)
    assert long.deadline(7, compute_estimate_s=0.5) == pytest.approx(long.conditions_time(7) - 0.04)


def test_block_length_changes_when_frames_are_made_not_what_they_show(speech):
    """Same inputs, 1-, 2- or 10-frame blocks: the same frames (the rules step frame by frame)."""
    outputs = []
    for block_frames in (1, 2, 10):
        backend = PortableBackend(block_frames=block_frames)
        backend.push_avatar_audio(speech[: 4 * SR], 0)
        for frame in range(100):
            backend.push_user_params(ms.from_dict({"smile": 0.6 if frame > 40 else 0.0}), frame, (0.3, 0.0))
        blocks = 100 // block_frames
        outputs.append(np.concatenate([backend.generate_block(k, GenerationSettings()).latents
                                       for k in range(blocks)]))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def _lipsync_of(latents: np.ndarray, speech: np.ndarray) -> dict:
    frames = len(latents)
    avatar = MotionSeries(log_ns=np.arange(frames) * 40_000_000, stamp_ns=np.arange(frames) * 40_000_000,
                          frame_index=np.arange(frames), latent=latents, latent_space=ms.LATENT_SPACE)
    chunks = [speech[i:i + 320] for i in range(0, frames * SPF, 320)]     # 20 ms AudioChunks
    stamps = np.arange(len(chunks)) * 20_000_000
    audio = AudioSeries(log_ns=stamps, stamp_ns=stamps, sample_rates=np.full(len(stamps), SR), samples=chunks)
    return lipsync(avatar, audio, FPS, max_lag=10)


def test_lips_stay_in_sync_when_each_block_sees_only_the_audio_arrived_by_then(speech):
    """A 1-frame block is generated once its conditions' media time has come; the avatar's speech
    (a TTS stream, stamped at its first sample) has then arrived up to that time and no further.
    The evaluation's lip-sync proxy must be >= 0.85 at lag 0."""
    backend = PortableBackend()
    frames = (len(speech) // SPF) // backend.block_frames * backend.block_frames
    latents = []
    for block in range(frames // backend.block_frames):
        start = block * backend.block_frames * SPF
        backend.push_avatar_audio(speech[start:start + backend.block_frames * SPF], start)
        latents.append(backend.generate_block(block, GenerationSettings()).latents)
    result = _lipsync_of(np.concatenate(latents), speech)
    assert result["available"] and result["feature"] == "jaw_open"
    assert result["r_at_lag0"] >= 0.85, result
    assert abs(result["best_lag_frames"]) <= 1, result


def test_the_generator_schedules_the_backends_one_frame_blocks_at_a_100_ms_budget(speech):
    """GeneratorCore in real time with the portable backend: blocks of the backend's length,
    frames published continuously, at the budget after their media time."""
    backend = PortableBackend()
    blocks = []
    core = GeneratorCore(backend, GeneratorConfig(latency_budget_ms=LOW_LATENCY_BUDGET_MS, use_camera=False,
                                                  use_user_audio=False),
                         on_block=blocks.append)
    core.start()
    t0 = core.clock.t0
    stop = threading.Event()

    def tts() -> None:   # 20 ms chunks, each published at its first sample's time (audio_file_player)
        for i, first in enumerate(range(0, 2 * SR, 320)):
            time.sleep(max(0.0, t0 + first / SR - time.time()))
            if stop.is_set():
                return
            core.submit_avatar_audio(speech[first:first + 320], SR, t0 + first / SR)

    feeder = threading.Thread(target=tts, daemon=True)
    feeder.start()
    published = []
    try:
        while time.time() < t0 + 2.0:
            published += core.due_frames()
            time.sleep(0.005)
    finally:
        stop.set()
        core.stop()
        feeder.join()
    assert blocks and all(len(b.latents) == backend.block_frames for b in blocks)
    assert [b.first_frame for b in blocks] == [k * backend.block_frames for k in range(len(blocks))]
    indices = [p.frame.frame_index for p in published]
    assert indices == list(range(len(indices))) and len(indices) > 30
    # due_frames hands out a frame only once its publication time (media time + budget) has come
    assert min(p.latency_s for p in published) >= LOW_LATENCY_BUDGET_MS / 1e3 - 0.006
    assert core.snapshot().latency_budget_ms == LOW_LATENCY_BUDGET_MS


def test_demo_low_latency_parameters(tmp_path):
    """--low-latency: the shortest budget the portable backend accepts, display and speaker right
    after it; the standard mode keeps its 440 ms."""
    package_yaml = tmp_path / "package.yaml"
    package_yaml.write_text("/**:\n  ros__parameters:\n    presentation_delay_ms: 1000.0\n")
    for low_latency, budget in ((True, 100.0), (False, 440.0)):
        path = write_demo_parameters(package_yaml, tmp_path / f"p{low_latency}.yaml", "portable",
                                     low_latency=low_latency)
        params = yaml.safe_load(path.read_text())
        assert params["/**/generator"]["ros__parameters"]["latency_budget_ms"] == budget
        delay = params["/**"]["ros__parameters"]["presentation_delay_ms"]
        assert budget < delay <= budget + 30.0
