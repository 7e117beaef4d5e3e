"""The recorder node records every message of real publishers (separate processes) intact."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import rclpy  # noqa: F401,E402  (installed by the set-up: its absence fails, never skips)
import avatar_forcing_ros.msg  # noqa: F401,E402

from avatar_forcing_ros.evaluation.bag_io import open_bag  # noqa: E402
from avatar_forcing_ros.evaluation.msg_types import build_typestore  # noqa: E402
from ros_testing import REPO, ros_env, unique_domain_id  # noqa: E402

TOPICS = ('/avatar/motion', '/avatar/image/compressed', '/user/audio', '/avatar/generator_status')
COUNT = 100


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=env, cwd=REPO,
                            stdout=log.open('w'), stderr=subprocess.STDOUT)


def _record(tmp_path: Path, stop_signal: int) -> tuple[Path, int, str]:
    env = ros_env(unique_domain_id())
    bag = tmp_path / 'bag'
    topics = '[' + ','.join(f"'{t.lstrip('/')}'" for t in TOPICS) + ']'
    recorder = _start(['-m', 'avatar_forcing_ros.nodes.recorder_node', '--ros-args',
                       '-p', f'output:={bag}', '-p', f'topics:={topics}',
                       '-p', 'discovery_period_s:=0.1'], env, tmp_path / 'recorder.log')
    try:
        publisher = _start([str(REPO / 'test' / 'recorder_publisher.py'), str(COUNT), '50'], env,
                           tmp_path / 'publisher.log')
        assert publisher.wait(timeout=120) == 0, (tmp_path / 'publisher.log').read_text()
        recorder.send_signal(stop_signal)
        code = recorder.wait(timeout=60)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    return bag, code, (tmp_path / 'recorder.log').read_text()


@pytest.mark.parametrize('stop_signal', [signal.SIGINT, signal.SIGTERM], ids=['sigint', 'sigterm'])
def test_every_published_message_is_recorded(stop_signal, tmp_path):
    bag, code, log = _record(tmp_path, stop_signal)
    assert code == 0, log
    for topic in TOPICS:
        assert f'{topic}: {COUNT} written, 0 dropped' in log, log
    assert 'Failed to publish log message to rosout' not in log, log   # summary after shutdown
    source = open_bag(bag)
    assert not source.salvaged and source.expected_count == COUNT * len(TOPICS)
    store = build_typestore()
    stamps: dict[str, list] = {t: [] for t in TOPICS}
    for raw in source.messages(set(TOPICS)):
        msg = store.deserialize_cdr(raw.data, raw.msgtype)
        stamps[raw.topic].append((msg.header.stamp.sec, msg.header.stamp.nanosec))
        if raw.topic == '/avatar/motion':
            assert list(msg.latent) == [float(msg.frame_index)] * 11
    assert not source.problems
    from avatar_forcing_ros.evaluation.cli import main as evaluate
    assert evaluate([str(bag), '-o', str(tmp_path / 'report'), '--no-progress']) == 0
    expected = [(1000 + i, i) for i in range(COUNT)]
    for topic in TOPICS:
        assert stamps[topic] == expected, topic


def test_bag_definitions_decode_without_our_message_files(tmp_path):
    """The bag carries the message definitions: an empty-store reader (rosbags AnyReader) decodes it."""
    from rosbags.highlevel import AnyReader
    bag, code, log = _record(tmp_path, signal.SIGINT)
    assert code == 0, log
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic == '/avatar/generator_status']
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(conns)]
    assert len(msgs) == COUNT and msgs[-1].backend == 'test'


def test_invalid_parameters_refused_at_start(tmp_path):
    (tmp_path / 'taken').mkdir()
    env = ros_env(unique_domain_id())
    for params, text in ((['storage:=tape'], "parameter 'storage'"),
                         ([f'output:={tmp_path / "taken"}'], "parameter 'output'")):
        args = [sys.executable, '-m', 'avatar_forcing_ros.nodes.recorder_node', '--ros-args']
        for p in params:
            args += ['-p', p]
        proc = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and text in proc.stderr, proc.stderr
