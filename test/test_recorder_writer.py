"""ThreadedBagWriter (ROS-free): bounded memory, counted drops, complete bag after close."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from avatar_forcing_ros.evaluation.bag_io import open_bag
from avatar_forcing_ros.evaluation.msg_types import build_typestore
from avatar_forcing_ros.recording.threaded_writer import ThreadedBagWriter

STORE = build_typestore()
T = STORE.types


def _motion(i: int) -> bytes:
    header = T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](sec=i, nanosec=7),
                                      frame_id='')
    msg = T['avatar_forcing_ros/msg/MotionLatent'](
        header=header, frame_index=i, block_index=0, latent_space='x',
        latent=np.zeros(4, np.float32), nfe=1, guidance_branches=1, is_hold=False)
    return STORE.serialize_cdr(msg, 'avatar_forcing_ros/msg/MotionLatent')


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_written_bag_is_complete(tmp_path, storage):
    writer = ThreadedBagWriter(tmp_path / 'bag', storage=storage, typestore=STORE)
    writer.add_topic('/m', 'avatar_forcing_ros/msg/MotionLatent')
    assert all(writer.write('/m', 1_000 + i, _motion(i)) for i in range(300))
    stats = writer.close()
    assert stats.written['/m'] == 300 and not stats.dropped and not stats.errors
    assert writer.close() is stats                            # idempotent
    source = open_bag(tmp_path / 'bag')
    frames = [STORE.deserialize_cdr(r.data, r.msgtype).frame_index for r in source.messages({'/m'})]
    assert frames == list(range(300)) and not source.salvaged and not source.problems


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    writer = ThreadedBagWriter(tmp_path / 'bag', max_messages=10, max_bytes=10_000, typestore=STORE)
    writer.add_topic('/m', 'avatar_forcing_ros/msg/MotionLatent')
    gate = threading.Event()
    original = writer._writer.write
    writer._writer.write = lambda *a: (gate.wait(5), original(*a))   # a stalled disk
    accepted = sum(writer.write('/m', i, _motion(i)) for i in range(100))
    assert accepted <= 11 and writer.stats.dropped['/m'] == 100 - accepted
    assert writer.stats.peak_queued_messages <= 10
    big = bytes(20_000)
    assert not writer.write('/m', 200, big)                  # over the byte budget
    gate.set()
    stats = writer.close()
    assert stats.written['/m'] == accepted


def _close_within(writer: ThreadedBagWriter, seconds: float = 10.0):
    """close() in a thread, so that a hang fails the test instead of blocking it."""
    result = []
    closer = threading.Thread(target=lambda: result.append(writer.close()), daemon=True)
    closer.start()
    closer.join(seconds)
    assert not closer.is_alive(), 'close() hangs'
    return result[0]


def test_storage_failure_is_kept_and_nothing_blocks(tmp_path):
    writer = ThreadedBagWriter(tmp_path / 'bag', max_messages=10, typestore=STORE)
    writer.add_topic('/m', 'avatar_forcing_ros/msg/MotionLatent')
    gate = threading.Event()
    original = writer._writer.write
    calls = []

    def disk_fills_up(*args):
        gate.wait(10)               # hold the thread until all 5 messages are queued
        calls.append(1)
        if len(calls) > 3:
            raise OSError(28, 'No space left on device')
        original(*args)

    writer._writer.write = disk_fills_up
    assert all(writer.write('/m', 1_000 + i, _motion(i)) for i in range(5))
    gate.set()
    writer._thread.join(10)
    assert not writer._thread.is_alive()
    assert writer.stats.written['/m'] == 3
    assert writer.stats.dropped['/m'] == 2             # the failed write and the one queued
    assert writer.stats.errors == ['OSError: [Errno 28] No space left on device']
    # later messages are refused and counted, even more than the queue holds
    assert not any(writer.write('/m', 2_000 + i, _motion(i)) for i in range(20))
    with pytest.raises(ValueError, match='No space left'):
        writer.add_topic('/other', 'avatar_forcing_ros/msg/MotionLatent')
    stats = _close_within(writer)
    assert stats.written['/m'] == 3 and stats.dropped['/m'] == 22
    assert stats.errors == ['OSError: [Errno 28] No space left on device']
    source = open_bag(tmp_path / 'bag')                 # closed: what was written is readable
    frames = [STORE.deserialize_cdr(r.data, r.msgtype).frame_index for r in source.messages({'/m'})]
    assert frames == [0, 1, 2] and not source.problems


def test_write_to_undeclared_topic_is_refused(tmp_path):
    writer = ThreadedBagWriter(tmp_path / 'bag', typestore=STORE)
    writer.add_topic('/m', 'avatar_forcing_ros/msg/MotionLatent')
    with pytest.raises(ValueError, match='not declared'):
        writer.write('/nowhere', 1, _motion(0))
    assert writer.write('/m', 2, _motion(1))            # the writer thread is still alive
    stats = _close_within(writer)
    assert stats.written['/m'] == 1 and not stats.errors


def test_rejects_unknown_type_and_existing_path(tmp_path):
    (tmp_path / 'exists').mkdir()
    with pytest.raises(ValueError, match='exists'):
        ThreadedBagWriter(tmp_path / 'exists', typestore=STORE)
    writer = ThreadedBagWriter(tmp_path / 'bag', typestore=STORE)
    with pytest.raises(ValueError, match='no message definition'):
        writer.add_topic('/x', 'other_pkg/msg/Thing')
    writer.add_topic('/x', 'other_pkg/msg/Thing', 'int32 a\nstring b\n')
    writer.write('/x', 5, STORE.serialize_cdr(T['other_pkg/msg/Thing'](a=3, b='hi'),
                                              'other_pkg/msg/Thing'))
    assert writer.close().written['/x'] == 1


def test_writer_is_ros_free():
    import subprocess
    import sys
    code = ('import sys, avatar_forcing_ros.recording.threaded_writer; '
            'assert not [m for m in sys.modules if m.startswith("rclpy")]')
    assert subprocess.run([sys.executable, '-c', code], timeout=60).returncode == 0
