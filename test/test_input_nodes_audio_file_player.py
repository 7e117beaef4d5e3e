"""audio_file_player as a real process: exact samples, steady stamps, real-time pace, switching."""
import time

import numpy as np
import pytest
import soundfile
from std_msgs.msg import String

from avatar_forcing_ros.conversions import audio_chunk_to_array, stamp_to_nanoseconds
from avatar_forcing_ros.msg import AudioChunk
from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id

RATE = 16000


def write_wav(path, seconds: float, seed: int) -> np.ndarray:
    """A 16 kHz mono PCM16 file; returns its samples as the player reads them (float32)."""
    ints = np.random.default_rng(seed).integers(-20000, 20000, int(seconds * RATE), dtype=np.int16)
    soundfile.write(path, ints, RATE, subtype='PCM_16')
    return ints.astype(np.float32) / 32768


def samples_of(chunks) -> np.ndarray:
    return np.concatenate([audio_chunk_to_array(c)[0][:, 0] for c in chunks])


def connected(listener: Listener, play_publisher=None) -> bool:
    """Wait until the player's chunks (and our ~/play messages) can flow both ways."""
    ok = listener.spin_until(
        lambda: listener.node.count_publishers('avatar/audio') > 0
        and (play_publisher is None or play_publisher.get_subscription_count() > 0), 20)
    listener.spin_until(lambda: False, 0.5)  # the remote side completes its matching
    return ok


@pytest.fixture
def domain():
    domain_id = unique_domain_id()
    with Listener(domain_id) as listener:
        yield domain_id, listener


def test_plays_file_exactly_in_real_time(tmp_path, domain):
    domain_id, listener = domain
    expected = write_wav(tmp_path / 'speech.wav', 1.5, seed=1)
    received = listener.collect(AudioChunk, 'avatar/audio', with_arrival=True)
    with NodeProcess('audio_file_player', ros_env(domain_id),
                     params={'file': str(tmp_path / 'speech.wav')}) as player:
        assert player.wait_for_output('playing', 20), player.output()  # the start-up file
        publisher = listener.node.create_publisher(String, 'audio_file_player/play', 10)
        assert connected(listener, publisher), player.output()
        publisher.publish(String(data=str(tmp_path / 'speech.wav')))  # play again, connected

        def replay() -> list:  # chunks from the last start of the file on
            starts = [i for i, (m, _) in enumerate(received)
                      if np.array_equal(np.asarray(m.samples), expected[:320])]
            return received[starts[-1]:] if starts else []

        assert listener.spin_until(
            lambda: sum(len(m.samples) for m, _ in replay()) >= len(expected), 20), player.output()
        listener.spin_until(lambda: False, 0.3)  # nothing more: idle after the file
        replayed = replay()
        chunks = [m for m, _ in replayed]
        assert np.array_equal(samples_of(chunks), expected)
        assert all(len(c.samples) == 320 for c in chunks[:-1]) and len(chunks[-1].samples) <= 320
        assert all(c.sample_rate == RATE and c.channels == 1 for c in chunks)
        assert all(c.header.frame_id == 'speech.wav' for c in chunks)
        sequences = [c.sequence for c in chunks]
        assert sequences == list(range(sequences[0], sequences[0] + len(chunks)))
        stamps = np.array([stamp_to_nanoseconds(c.header.stamp) for c in chunks])
        assert np.array_equal(stamps - stamps[0], np.arange(len(chunks)) * 20_000_000)
        arrival_span = replayed[-1][1] - replayed[0][1]
        assert 0.8 * 1.48 < arrival_span < 1.48 + 1.0  # real-time pace, wide bounds
        assert player.interrupt() == 0


def test_switch_files_and_bad_path_keeps_running(tmp_path, domain):
    domain_id, listener = domain
    first = write_wav(tmp_path / 'first.wav', 3.0, seed=2)
    second = write_wav(tmp_path / 'second.wav', 0.5, seed=3)
    received = listener.collect(AudioChunk, 'avatar/audio')
    with NodeProcess('audio_file_player', ros_env(domain_id), params={'loop': True}) as player:
        publisher = listener.node.create_publisher(String, 'audio_file_player/play', 10)
        assert connected(listener, publisher), player.output()
        assert received == []  # idle: nothing published without a file
        publisher.publish(String(data=str(tmp_path / 'missing.wav')))
        assert player.wait_for_output('missing.wav', 10), player.output()
        publisher.publish(String(data=str(tmp_path / 'first.wav')))
        assert listener.spin_until(lambda: len(received) >= 10, 10), player.output()
        publisher.publish(String(data=str(tmp_path / 'second.wav')))
        # switched mid-file: a chunk starting with the second file's first samples must appear
        starts = lambda: [i for i, c in enumerate(received)  # noqa: E731
                          if np.array_equal(np.asarray(c.samples[:320]), second[:320])]
        assert listener.spin_until(lambda: len(starts()) >= 2, 10), player.output()  # looped
        switch = starts()[0]
        before = samples_of(received[:switch])
        assert np.array_equal(before, first[:len(before)])  # first file until the switch
        assert len(before) < len(first)
        loop = samples_of(received[switch:starts()[1]])
        assert np.array_equal(loop, second)  # one full pass of the second file, then loop
        sequences = [c.sequence for c in received]
        assert sequences == list(range(sequences[0], sequences[0] + len(received)))
        assert player.process.poll() is None
        assert player.interrupt() == 0


def test_bad_parameters_fail_at_start_up(tmp_path):
    env = ros_env(unique_domain_id())
    player = NodeProcess('audio_file_player', env, params={'file': str(tmp_path / 'nope.wav')})
    assert player.wait(timeout=30) != 0
    assert "parameter 'file'" in player.output() and 'nope.wav' in player.output()
    broken = tmp_path / 'broken.wav'  # a float WAV holding a NaN: refused like an unreadable one
    soundfile.write(broken, np.array([0.0, np.nan, 0.0], np.float32), RATE, subtype='FLOAT')
    player = NodeProcess('audio_file_player', env, params={'file': str(broken)})
    assert player.wait(timeout=30) == 2
    assert "parameter 'file'" in player.output() and 'NaN' in player.output(), player.output()
    player = NodeProcess('audio_file_player', env, params={'sample_rate': 10})
    assert player.wait(timeout=30) != 0
    assert 'sample_rate' in player.output()


def test_file_parameter_at_run_time_is_validated_then_applied(tmp_path, domain):
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    domain_id, listener = domain
    speech = write_wav(tmp_path / 'speech.wav', 0.61, seed=4)   # 30.5 chunks: looping wraps mid-chunk
    received = listener.collect(AudioChunk, 'avatar/audio')
    with NodeProcess('audio_file_player', ros_env(domain_id), params={'loop': True}) as player:
        client = AsyncParameterClient(listener.node, 'audio_file_player')
        assert listener.spin_until(lambda: client.services_are_ready(), 20), player.output()
        assert connected(listener), player.output()

        def set_file(path: str):
            future = client.set_parameters([Parameter('file', value=path)])
            assert listener.spin_until(future.done, 10)
            return future.result().results[0]

        refused = set_file(str(tmp_path / 'missing.wav'))
        assert not refused.successful and 'missing.wav' in refused.reason
        assert set_file(str(tmp_path / 'speech.wav')).successful
        assert listener.spin_until(
            lambda: sum(len(m.samples) for m in received) >= 2 * len(speech), 10), player.output()
        played = samples_of(received)
        assert np.array_equal(played[:len(speech)], speech)  # from the file's start, looped
        assert np.array_equal(played[len(speech):2 * len(speech)], speech)
        # the wrap stays inside whole chunks, so the chunks stay on the steady 20 ms timeline
        assert {len(m.samples) for m in received} == {320}
        stamps = np.array([stamp_to_nanoseconds(m.header.stamp) for m in received])
        assert np.array_equal(np.diff(stamps), np.full(len(stamps) - 1, 20_000_000))
        assert player.interrupt() == 0
