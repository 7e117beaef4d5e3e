"""Bags written by another MCAP writer (mcap + mcap-ros2-support, zstd chunks, ros2msg schemas,
as ``ros2 bag record`` writes them) are read as they are, whole or cut short."""
from __future__ import annotations

import json
import os

import pytest
from mcap_ros2.writer import Writer

from avatar_forcing_ros.evaluation.cli import main
from avatar_forcing_ros.evaluation.evaluate import EvaluationOptions, evaluate_session, load_session
from avatar_forcing_ros.evaluation.msg_types import build_typestore

STORE = build_typestore()
FRAMES = 400
T0 = 1_750_000_000


def _write(path, chunk_size: int = 1 << 20) -> None:
    msgdef = STORE.generate_msgdef('avatar_forcing_ros/msg/MotionLatent', ros_version=2)[0]
    with path.open('wb') as stream:
        writer = Writer(stream, chunk_size=chunk_size)
        schema = writer.register_msgdef('avatar_forcing_ros/msg/MotionLatent', msgdef)
        for n in range(FRAMES):
            stamp_ns = T0 * 10**9 + n * 40_000_000
            msg = {'header': {'stamp': {'sec': stamp_ns // 10**9, 'nanosec': stamp_ns % 10**9},
                              'frame_id': 'portrait'},
                   'frame_index': n, 'block_index': n // 10, 'latent_space': 'other/space',
                   'latent': [float(n % 7), float(n % 5), 1.0], 'nfe': 8, 'guidance_branches': 2,
                   'is_hold': n % 100 == 0}
            writer.write_message('/avatar/motion', schema, msg, log_time=stamp_ns + 250_000_000,
                                 publish_time=stamp_ns + 250_000_000)
        writer.finish()


def test_bare_mcap_from_mcap_ros2_writer(tmp_path):
    _write(tmp_path / 'session.mcap')
    options = EvaluationOptions()
    result = evaluate_session(load_session(tmp_path / 'session.mcap', STORE, options), options)
    assert result['ok'], result['problems']
    assert result['latency']['end_to_end']['p50'] == pytest.approx(250)
    gen = result['generation']
    assert gen['frames'] == FRAMES and gen['hold_frames'] == 4 and gen['nfe_histogram'] == {'8': FRAMES}
    assert result['rate']['avatar_motion']['jitter_p99_ms'] == pytest.approx(0, abs=1e-6)


def test_cut_zstd_mcap_directory_gives_partial_results(tmp_path, capsys):
    bag = tmp_path / 'bag'
    bag.mkdir()
    _write(bag / 'bag_0.mcap', chunk_size=4096)          # many chunks: damage ends in one
    size = (bag / 'bag_0.mcap').stat().st_size
    os.truncate(bag / 'bag_0.mcap', size * 2 // 3)
    assert main([str(bag), '-o', str(tmp_path / 'out'), '--no-progress']) == 1
    assert 'truncated' in capsys.readouterr().err
    result = json.loads((tmp_path / 'out' / 'evaluation.json').read_text())['bags'][0]
    assert FRAMES // 3 < result['generation']['frames'] < FRAMES      # the index is lost too
    assert result['rate']['avatar_motion']['missing_frames'] == 0   # a clean prefix
