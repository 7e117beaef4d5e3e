"""Messages a bag holds but the evaluation cannot use: left out, counted, reported, exit 0.

The recorder keeps malformed messages on purpose (a fault during a live demo must show in its
evaluation), so each kind below is written into an otherwise healthy bag. The evaluation must
still write its outputs, count each kind per topic, keep every other figure right, and exit 0:
the bag itself is not damaged.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import bag_faults as bf
from avatar_forcing_ros.evaluation.cli import main

CHUNK = bf.RATE // 50          # the synthetic session's 20 ms chunks
CHUNKS = 150 * 2               # in 150 frames (6 s)
MS = 1_000_000


def _evaluate(tmp_path, extra, frames=150, capsys=None) -> tuple[int, dict]:
    bag = bf.write(tmp_path / 'bag', extra, frames)
    out = tmp_path / 'out'
    status = main([str(bag), '-o', str(out), '--no-progress'])
    assert (out / 'report.html').is_file()
    return status, json.loads((out / 'evaluation.json').read_text())['bags'][0]


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_avatar_audio_is_left_out_and_lipsync_still_measured(tmp_path, capsys, bad):
    samples = np.zeros(CHUNK, np.float32)
    samples[7] = bad
    at = bf.frame_ns(50)
    status, result = _evaluate(tmp_path, [bf.audio_chunk(at + 25 * MS, at, samples)])
    assert status == 0
    assert result['problems'] == [f'/avatar/audio: 1 of {CHUNKS + 1} messages left out: '
                                  'NaN or inf samples']
    assert not result['ok'] and not result['damaged']
    assert result['lipsync']['available'] and result['lipsync']['r_best'] > 0.5
    assert 'warning: /avatar/audio: 1 of' in capsys.readouterr().err


def test_chunks_with_impossible_fields_are_counted_by_cause(tmp_path):
    at = bf.frame_ns(30)
    extra = [bf.audio_chunk(at + 25 * MS, at, np.zeros(3), channels=2),
             bf.audio_chunk(at + 26 * MS, at + MS, np.zeros(320), rate=4_000_000_000),
             bf.audio_chunk(at + 27 * MS, at + 2 * MS, np.zeros(320), rate=0),
             bf.audio_chunk(at + 28 * MS, at + 3 * MS, np.zeros(320), channels=0),
             bf.audio_chunk(at + 29 * MS, at + 4 * MS, np.full(4, np.nan), topic='user/audio')]
    status, result = _evaluate(tmp_path, extra)
    assert status == 0
    assert sorted(result['problems']) == [
        f'/avatar/audio: 1 of {CHUNKS + 4} messages left out: 0 channels',
        f'/avatar/audio: 1 of {CHUNKS + 4} messages left out: sample count not a multiple of '
        'channels',
        f'/avatar/audio: 2 of {CHUNKS + 4} messages left out: sample rate outside 1000..384000 Hz',
        '/user/audio: 1 of 1 messages left out: NaN or inf samples']
    assert result['lipsync']['available']


def test_session_shorter_than_a_second_is_evaluated(tmp_path):
    status, result = _evaluate(tmp_path, [], frames=10)
    assert status == 0 and result['ok']
    assert result['generation']['frames'] == 10
    assert any(name.endswith('_generation.png') for name in
               (p.name for p in (tmp_path / 'out').iterdir()))


def test_stamps_that_repeat_go_backwards_or_lie_far_away_are_left_out(tmp_path):
    """A frame re-sent with an old stamp would count a latency of seconds and fold the motion
    back in time; a frame stamped 0 would stretch the motion grid over 50 years."""
    latent = np.zeros(11, np.float32)
    extra = [bf.motion(bf.frame_ns(80) + 110 * MS, bf.frame_ns(20), latent),   # backwards
             bf.motion(bf.frame_ns(100) + 110 * MS, bf.frame_ns(100), latent),  # repeats
             bf.motion(bf.frame_ns(120) + 110 * MS, 0, latent)]                 # unset stamp
    status, result = _evaluate(tmp_path, extra)
    assert status == 0
    assert sorted(result['problems']) == [
        '/avatar/motion: 1 of 153 messages left out: stamp earlier than the previous stamp',
        '/avatar/motion: 1 of 153 messages left out: stamp far from its arrival time',
        '/avatar/motion: 1 of 153 messages left out: stamp repeats the previous stamp']
    motion_latency = result['latency']['outputs']['avatar_motion']
    assert motion_latency['max'] == pytest.approx(100.0, abs=0.01)     # as written: 100 ms
    assert result['generation']['frames'] == 150
    assert result['reactiveness']['groups']['pose']['best_lag_frames'] == 5
    assert result['reactiveness']['groups']['pose']['score'] > 0.95


def test_latents_of_another_length_space_or_type_are_left_out(tmp_path):
    extra = [bf.motion(bf.frame_ns(10) + 101 * MS, bf.frame_ns(10) + MS, np.zeros(5)),
             bf.motion(bf.frame_ns(11) + 101 * MS, bf.frame_ns(11) + MS, np.zeros(0)),
             bf.motion(bf.frame_ns(12) + 101 * MS, bf.frame_ns(12) + MS, np.zeros(11),
                       space='avatar_forcing/lia_motion'),
             bf.text(bf.frame_ns(13) + 101 * MS, 'avatar/motion')]
    status, result = _evaluate(tmp_path, extra)
    assert status == 0
    assert sorted(result['problems']) == [
        '/avatar/motion: 1 of 154 messages left out: empty latent',
        "/avatar/motion: 1 of 154 messages left out: latent length 5 (most frames: 11)",
        "/avatar/motion: 1 of 154 messages left out: latent space 'avatar_forcing/lia_motion' "
        "(most frames: 'portable/face_params_v1')",
        '/avatar/motion: 1 of 154 messages left out: type std_msgs/msg/String (expected '
        'avatar_forcing_ros/msg/MotionLatent)']
    assert result['generation']['frames'] == 150
    assert result['reactiveness']['groups']['pose']['best_lag_frames'] == 5


def test_a_topic_of_only_unusable_messages_is_absent_not_a_crash(tmp_path):
    extra = [bf.motion(bf.frame_ns(n) + 101 * MS, bf.frame_ns(n) + MS, np.zeros(0),
                       topic='user/motion') for n in range(3)]
    bag = bf.write(tmp_path / 'bag', extra)
    out = tmp_path / 'out'
    assert main([str(bag), '-o', str(out), '--no-progress', '--topic', 'user_motion=/none',
                 '--topic', 'avatar_motion=/user/motion']) == 0
    result = json.loads((out / 'evaluation.json').read_text())['bags'][0]
    assert result['problems'] == ['/user/motion: 3 of 153 messages left out: empty latent']
    assert result['generation']['frames'] == 150


def test_non_finite_status_fields_give_valid_json(tmp_path):
    """Python writes NaN as a bare ``NaN`` that JSON readers refuse; they become null."""
    fields = dict(backend='x', latent_space='x', last_block_compute_s=float('nan'),
                  mean_block_compute_s=float('nan'), queue_depth=3,
                  latency_budget_ms=float('inf'), last_latency_ms=float('nan'), nfe=10,
                  guidance_branches=3, frames_published=1, hold_frames=0, late_blocks=0,
                  malformed_inputs=0, camera_age_s=0.0, user_audio_age_s=0.0,
                  avatar_audio_age_s=0.0, camera_stale=False, user_audio_stale=False,
                  avatar_audio_stale=False, face_found_fraction=float('nan'), last_face_age_s=-1.0)
    msg = bf.STORE.types[bf.OWN + 'GeneratorStatus'](header=bf._header(bf.frame_ns(1)), **fields)
    status = (bf.frame_ns(1) + 1, 'avatar/generator_status', bf.OWN + 'GeneratorStatus',
              bf.STORE.serialize_cdr(msg, bf.OWN + 'GeneratorStatus'))
    bag = bf.write(tmp_path / 'bag', [status])
    out = tmp_path / 'out'
    assert main([str(bag), '-o', str(out), '--no-progress']) == 0

    def refuse(constant):
        raise ValueError(f'{constant} is not JSON')
    result = json.loads((out / 'evaluation.json').read_text(), parse_constant=refuse)['bags'][0]
    assert result['status']['mean_block_compute_s'] is None
