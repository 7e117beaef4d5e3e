"""Fault sweep, damaged bags: every kind of bad recording into the real evaluation and MP4
export commands (separate processes, as the demo and a user run them).

Each bag is a healthy session plus one kind of damage. Both commands must write their outputs,
report each problem with its count, exit 0 when the bag was read completely (unusable messages
are left out: the recorder keeps them on purpose) and 1 when the bag itself is damaged, and never
print a Python traceback.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

import bag_faults as bf

MS = 1_000_000
CHUNK = bf.RATE // 50


def _chunk(n: int, samples, **fields) -> tuple:
    """An avatar audio chunk stamped at frame ``n`` (+1 ms, after the healthy chunk there)."""
    return bf.audio_chunk(bf.frame_ns(n) + 40 * MS, bf.frame_ns(n) + MS, samples, **fields)


def _nan_audio() -> list:
    return [_chunk(40, np.full(CHUNK, np.nan)), _chunk(60, np.r_[np.zeros(CHUNK - 1), np.inf])]


def _odd_samples() -> list:
    return [_chunk(40, np.zeros(CHUNK + 1), channels=2)]


def _absurd_rate() -> list:   # the last chunk of the track claims 4e9 Hz
    return [bf.audio_chunk(bf.frame_ns(160) + 40 * MS, bf.frame_ns(149), np.zeros(CHUNK),
                           rate=4_000_000_000)]


def _stamps() -> list:
    zero = np.zeros(11, np.float32)
    return [bf.motion(bf.frame_ns(80) + 110 * MS, bf.frame_ns(20), zero),          # backwards
            bf.motion(bf.frame_ns(90) + 110 * MS, bf.frame_ns(90), zero),          # repeats
            bf.motion(bf.frame_ns(100) + 110 * MS, 0, zero),                       # unset
            bf.compressed(bf.frame_ns(70) + 130 * MS, bf.frame_ns(10), bf.jpeg()),  # backwards
            bf.audio_chunk(bf.frame_ns(50) + 40 * MS, 0, np.zeros(CHUNK))]          # unset


def _mixed() -> list:
    t = bf.frame_ns
    return [bf.motion(t(10) + 101 * MS, t(10) + MS, np.zeros(5)),
            bf.motion(t(11) + 101 * MS, t(11) + MS, np.zeros(0)),
            bf.text(t(12) + 101 * MS, 'avatar/motion'),
            bf.compressed(t(20) + 130 * MS, t(20) + MS, b''),
            bf.compressed(t(30) + 130 * MS, t(30) + MS, bf.jpeg(), fmt='rgb8; weird codec'),
            bf.compressed(t(40) + 130 * MS, t(40) + MS, b'\xff\xd8 garbage \xff\xd9')]


# name -> (extra messages, frames, expected problem lines, exit status)
CASES = {
    'nan_audio': (_nan_audio(), 150,
                  ['/avatar/audio: 2 of 302 messages left out: NaN or inf samples'], 0),
    'odd_samples': (_odd_samples(), 150, ['/avatar/audio: 1 of 301 messages left out: sample '
                                          'count not a multiple of channels'], 0),
    'absurd_rate': (_absurd_rate(), 150, ['/avatar/audio: 1 of 301 messages left out: sample '
                                          'rate outside 1000..384000 Hz'], 0),
    'short': ([], 10, [], 0),
    'stamps': (_stamps(), 150, [
        '/avatar/audio: 1 of 301 messages left out: stamp far from its arrival time',
        '/avatar/image/compressed: 1 of 151 messages left out: stamp earlier than the previous '
        'stamp',
        '/avatar/motion: 1 of 153 messages left out: stamp earlier than the previous stamp',
        '/avatar/motion: 1 of 153 messages left out: stamp far from its arrival time',
        '/avatar/motion: 1 of 153 messages left out: stamp repeats the previous stamp'], 0),
    'mixed': (_mixed(), 150, [
        '/avatar/motion: 1 of 153 messages left out: empty latent',
        '/avatar/motion: 1 of 153 messages left out: latent length 5 (most frames: 11)',
        '/avatar/motion: 1 of 153 messages left out: type std_msgs/msg/String (expected '
        'avatar_forcing_ros/msg/MotionLatent)'], 0),
}
DAMAGED = ('truncated_mcap', 'truncated_sqlite', 'magic_only', 'bad_metadata', 'corrupt_cdr')


def _empty_topics(path: Path) -> Path:
    """A bag whose topics exist but hold no message (a recorder stopped at once)."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic, msgtype in (('/avatar/motion', bf.OWN + 'MotionLatent'),
                               ('/avatar/audio', bf.OWN + 'AudioChunk'),
                               ('/avatar/image/compressed', 'sensor_msgs/msg/CompressedImage')):
            writer.add_connection(topic, msgtype, typestore=bf.STORE)
    return path


@pytest.fixture(scope='module')
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp('sweep')
    out = {name: bf.write(root / name, extra, frames) for name, (extra, frames, _, _)
           in CASES.items()}
    out['empty_topics'] = _empty_topics(root / 'empty_topics')
    out['truncated_mcap'] = bf.truncate(bf.write(root / 'truncated_mcap', frames=1000), 0.6)
    out['truncated_sqlite'] = bf.truncate(
        bf.write(root / 'truncated_sqlite', frames=1000, storage='sqlite3'), 0.6)
    magic = bf.write(root / 'magic_only', frames=10)
    next(magic.glob('*.mcap')).write_bytes(b'\x89MCAP0\r\n')
    out['magic_only'] = magic
    garbage = b'\x00\x01\x00\x00' + b'\xff' * 60       # a CDR header, then no valid message
    out['corrupt_cdr'] = bf.write(root / 'corrupt_cdr', [
        (bf.frame_ns(30) + 110 * MS, 'avatar/motion', bf.OWN + 'MotionLatent', garbage),
        (bf.frame_ns(40) + 40 * MS, 'avatar/audio', bf.OWN + 'AudioChunk', garbage),
        (bf.frame_ns(50) + 130 * MS, 'avatar/image/compressed', 'sensor_msgs/msg/CompressedImage',
         garbage)])
    out['bad_metadata'] = bf.write(root / 'bad_metadata')
    (out['bad_metadata'] / 'metadata.yaml').write_bytes(b'\xff\xfe not yaml, not UTF-8 [')
    return out


def _run(*command: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
    assert 'Traceback' not in proc.stderr, proc.stderr
    return proc


def _evaluate(names: list[str], bags, out: Path) -> tuple[int, dict[str, dict]]:
    command = shutil.which('avatar-forcing-evaluate')
    assert command, 'avatar-forcing-evaluate is not on PATH: run the tests through scripts/test.sh'
    proc = _run(command, *(str(bags[n]) for n in names), '-o', str(out), '--no-progress')
    assert (out / 'report.html').is_file()
    results = json.loads((out / 'evaluation.json').read_text())['bags']
    return proc.returncode, dict(zip(names, results))


def test_unusable_messages_are_reported_and_the_evaluation_exits_0(bags, tmp_path):
    names = [*CASES, 'empty_topics']
    status, results = _evaluate(names, bags, tmp_path / 'eval')
    assert status == 0
    for name, (_, frames, problems, _) in CASES.items():
        assert sorted(results[name]['problems']) == problems, name
        assert not results[name]['damaged']
        assert results[name]['generation']['frames'] == frames, name
    assert results['nan_audio']['lipsync']['available']
    assert results['stamps']['latency']['outputs']['avatar_motion']['max'] < 101
    assert results['empty_topics']['ok'] and results['empty_topics']['generation'] is None


def test_damaged_bags_are_evaluated_as_far_as_readable_and_exit_1(bags, tmp_path):
    status, results = _evaluate(list(DAMAGED), bags, tmp_path / 'eval')
    assert status == 1
    for name in DAMAGED:
        assert results[name]['damaged'] and results[name]['problems'], name
    assert 100 < results['truncated_mcap']['generation']['frames'] < 1000
    assert results['bad_metadata']['generation']['frames'] == 150     # the MCAP file is intact
    corrupt = results['corrupt_cdr']
    assert corrupt['generation']['frames'] == 150 and corrupt['lipsync']['available']
    assert '/avatar/motion: 1 message(s) could not be decoded (SerdeError' in ' '.join(
        corrupt['problems'])
    # sqlite3 refuses a cut database file as a whole ("malformed"): nothing of it is readable
    assert results['truncated_sqlite']['message_counts'] == {}


@pytest.mark.parametrize('name', [*CASES, 'empty_topics', *DAMAGED])
def test_mp4_export(bags, tmp_path, name):
    out = tmp_path / 'avatar.mp4'
    proc = _run(sys.executable, '-m', 'avatar_forcing_ros.tools.bag_to_mp4', str(bags[name]),
                str(out))
    if name in ('empty_topics', 'magic_only', 'truncated_sqlite'):   # no image readable
        assert proc.returncode == 1 and 'no usable avatar images' in proc.stderr
        assert not out.exists()
        return
    assert proc.returncode == (1 if name in DAMAGED else 0), proc.stderr
    assert out.stat().st_size > 1000
    for line in CASES.get(name, ([], 0, [], 0))[2]:
        if line.startswith(('/avatar/audio', '/avatar/image')):
            assert line in proc.stderr, proc.stderr
    if name == 'absurd_rate':
        assert 'with audio at 16000 Hz' in proc.stderr
