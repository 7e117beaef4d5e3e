"""The tts node as a real process over DDS: text on avatar/say and Say goals become real-time
AudioChunks with steady stamps; feedback and result; cancel stops the speech at once; queue vs
interrupt; Piper missing -> espeak-ng with one warning; Piper (a separate process) speaking; and
the issue's end-to-end point: a running portable pipeline speaks a sentence sent with
`avatar-forcing-ctl say` through the tts node, lips in sync (lip-sync r from the recorded bag).
Wide timing bounds only."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from avatar_forcing_ros.action import Say
from avatar_forcing_ros.conversions import audio_chunk_to_array, stamp_to_nanoseconds
from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.media.speech_synthesis import espeak_to_wav
from avatar_forcing_ros.msg import AudioChunk
from ros_testing import Listener, NodeProcess, child_pids, evaluate_lipsync, ros_env, unique_domain_id

RATE, CHUNK_FRAMES, CHUNK_NS = 16000, 320, 20_000_000
LONG_TEXT = ('This sentence is long enough to be cut off well before its end, because the '
             'listener asks the avatar to stop talking and it has to close its mouth at once.')
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def cmdline(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/cmdline').read_text().replace('\0', ' ')
    except OSError:
        return ''


def samples_of(chunks) -> np.ndarray:
    return np.concatenate([audio_chunk_to_array(m)[0][:, 0] for m, _ in chunks])


def stamps_of(chunks) -> np.ndarray:
    return np.array([stamp_to_nanoseconds(m.header.stamp) for m, _ in chunks])


def ready(listener: Listener, node: NodeProcess, client: ActionClient | None = None) -> None:
    assert node.wait_for_output('tts ready', 120), node.output()
    assert listener.spin_until(
        lambda: listener.node.count_publishers('avatar/audio') > 0
        and listener.node.count_subscribers('avatar/say') > 0
        and (client is None or client.server_is_ready()), 30), node.output()
    listener.spin_until(lambda: False, 0.5)  # the remote side completes its matching


def send_goal(listener: Listener, client: ActionClient, text: str, feedback: list | None = None):
    future = client.send_goal_async(Say.Goal(text=text), feedback_callback=(
        (lambda m: feedback.append(m.feedback)) if feedback is not None else None))
    assert listener.spin_until(future.done, 30)
    handle = future.result()
    assert handle.accepted
    return handle


def wait_result(listener: Listener, handle, timeout: float = 60):
    future = handle.get_result_async()
    assert listener.spin_until(future.done, timeout)
    return future.result()


@pytest.fixture(scope='module')
def espeak_tts():
    """A tts node on espeak-ng (starts in a second), queue mode, with a listener and action client."""
    domain = unique_domain_id()
    with Listener(domain) as listener, NodeProcess('tts', ros_env(domain), {'engine': 'espeak'}) as node:
        client = ActionClient(listener.node, Say, 'avatar/say')
        chunks = listener.collect(AudioChunk, 'avatar/audio', RELIABLE, with_arrival=True)
        say = listener.node.create_publisher(String, 'avatar/say', 10)
        ready(listener, node, client)
        yield listener, node, client, chunks, say
        assert node.interrupt() == 0 and 'Traceback' not in node.output(), node.output()


def test_text_on_the_topic_becomes_real_time_chunks_with_steady_stamps(espeak_tts, tmp_path):
    listener, node, _, chunks, say = espeak_tts
    chunks.clear()
    text = 'Hello, I am the avatar. Nice to meet you.'
    espeak_to_wav(text, tmp_path / 'reference.wav')
    expected = load_audio(tmp_path / 'reference.wav', RATE)   # the same engine, resampled at once
    say.publish(String(data=text))
    assert listener.spin_until(lambda: len(chunks) * CHUNK_FRAMES >= len(expected) - CHUNK_FRAMES, 60)
    listener.spin_until(lambda: False, 0.5)
    messages = [m for m, _ in chunks]
    assert np.allclose(samples_of(chunks), expected, atol=1e-6)  # every sample once, in order
    assert all(len(m.samples) == CHUNK_FRAMES for m in messages[:-1])
    assert all(m.sample_rate == RATE and m.channels == 1 and m.header.frame_id == 'tts'
               for m in messages)
    assert np.all(np.diff([m.sequence for m in messages]) == 1)
    steps = np.diff(stamps_of(chunks))
    # steady: 20 ms apart; a gap only where the node's process was starved (the timeline restarts)
    assert np.all(steps >= CHUNK_NS) and np.mean(steps == CHUNK_NS) > 0.8, steps
    duration = len(expected) / RATE
    arrival_span = chunks[-1][1] - chunks[0][1]
    assert 0.8 * (duration - 0.02) < arrival_span < duration + 1.0  # real-time pace, wide bounds
    assert abs(stamps_of(chunks)[0] - time.time_ns()) < 60e9  # the ROS (system) clock


def test_goal_reports_progress_and_its_result(espeak_tts):
    listener, _, client, chunks, _ = espeak_tts
    chunks.clear()
    feedback: list = []
    handle = send_goal(listener, client, 'I can tell you how far along I am.', feedback)
    result = wait_result(listener, handle)
    assert result.status == GoalStatus.STATUS_SUCCEEDED
    assert result.result.completed and result.result.message == ''
    listener.spin_until(lambda: False, 0.3)
    sent_s = len(samples_of(chunks)) / RATE
    assert result.result.duration_s == pytest.approx(sent_s, abs=1e-3)
    progress = [f.progress for f in feedback]
    assert len(progress) >= 5 and progress == sorted(progress), progress  # 10 Hz over ~2 s
    assert 0.0 <= progress[0] < 0.5 and 0.7 < progress[-1] <= 1.0, progress
    assert max(f.sent_s for f in feedback) <= sent_s + 1e-3


def test_cancel_stops_the_speech_at_once(espeak_tts):
    listener, _, client, chunks, _ = espeak_tts
    chunks.clear()
    handle = send_goal(listener, client, LONG_TEXT)
    assert listener.spin_until(lambda: len(chunks) >= 25, 30)  # half a second spoken
    cancel = handle.cancel_goal_async()
    assert listener.spin_until(cancel.done, 10)
    at_cancel = len(chunks)
    result = wait_result(listener, handle)
    listener.spin_until(lambda: False, 1.0)
    assert result.status == GoalStatus.STATUS_CANCELED
    assert not result.result.completed and result.result.message == 'cancelled'
    assert len(chunks) - at_cancel <= 10, 'audio went on after the cancel'  # <= 0.2 s in flight
    assert len(chunks) < 250  # the text lasts about 9 s (450 chunks)


def test_ctrl_c_on_ctl_say_cancels_the_nodes_speech(espeak_tts):
    """Ctrl-C on `avatar-forcing-ctl say --via tts` ends the command (130) and the speech with it."""
    listener, _, _, chunks, _ = espeak_tts
    chunks.clear()
    ctl = subprocess.Popen([shutil.which('avatar-forcing-ctl'), 'say', '--via', 'tts', LONG_TEXT],
                           env=ros_env(listener.context.get_domain_id()), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.spin_until(lambda: len(chunks) >= 25, 60)  # half a second spoken
        ctl.send_signal(signal.SIGINT)
        _, stderr = ctl.communicate(timeout=30)
    finally:
        ctl.kill()
    at_exit = len(chunks)
    listener.spin_until(lambda: False, 1.0)
    assert ctl.returncode == 130 and 'Traceback' not in stderr, stderr
    assert len(chunks) - at_exit <= 10, 'audio went on after the command ended'  # <= 0.2 s in flight
    assert len(chunks) < 250  # the text lasts about 9 s (450 chunks)


def test_queue_says_texts_one_after_the_other(espeak_tts, tmp_path):
    listener, _, client, chunks, say = espeak_tts
    chunks.clear()
    texts = ('First I say this.', 'And then I say that.')
    expected = 0
    for i, text in enumerate(texts):
        espeak_to_wav(text, tmp_path / f'{i}.wav')
        expected += len(load_audio(tmp_path / f'{i}.wav', RATE))
    first = send_goal(listener, client, texts[0])
    say.publish(String(data=texts[1]))
    assert wait_result(listener, first).status == GoalStatus.STATUS_SUCCEEDED
    at_first_end = len(chunks)
    assert listener.spin_until(lambda: len(chunks) > at_first_end + 40, 30)  # the second follows
    listener.spin_until(lambda: False, 3.0)   # the second text (about 1.5 s) ends
    stamps = stamps_of(chunks)
    ends = stamps + np.array([len(m.samples) for m, _ in chunks]) * 1_000_000_000 // RATE
    assert np.all(stamps[1:] >= ends[:-1])  # the second text after the first, never mixed in
    assert len(samples_of(chunks)) == expected  # both texts, whole
    assert np.all(np.diff([m.sequence for m, _ in chunks]) == 1)


def test_interrupt_drops_the_speech_in_progress_and_piper_missing_falls_back(tmp_path):
    """mode interrupt; engine auto with an interpreter that has no piper-tts: espeak-ng, one warning."""
    no_piper = tmp_path / 'python-without-piper'
    no_piper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')   # -S: no site-packages
    no_piper.chmod(0o755)
    domain = unique_domain_id()
    with Listener(domain) as listener, NodeProcess(
            'tts', ros_env(domain), {'mode': 'interrupt', 'piper_python': str(no_piper)}) as node:
        client = ActionClient(listener.node, Say, 'avatar/say')
        chunks = listener.collect(AudioChunk, 'avatar/audio', RELIABLE, with_arrival=True)
        say = listener.node.create_publisher(String, 'avatar/say', 10)
        ready(listener, node, client)
        assert 'tts ready: engine espeak, mode interrupt' in node.output()
        warnings = [line for line in node.output().splitlines() if 'WARN' in line]
        assert len(warnings) == 1 and 'piper-tts is not installed' in warnings[0] \
            and 'espeak-ng instead' in warnings[0], node.output()

        first = send_goal(listener, client, LONG_TEXT)
        assert listener.spin_until(lambda: len(chunks) >= 25, 30)
        say.publish(String(data='Stop, listen to me.'))
        result = wait_result(listener, first)
        assert result.status == GoalStatus.STATUS_ABORTED and not result.result.completed
        assert result.result.message == 'interrupted by a newer text'
        listener.spin_until(lambda: False, 4.0)  # the short text (about 1.3 s) is said
        assert len(chunks) < 25 + 20 + 120, len(chunks)  # far less than the long text's 450
        assert node.interrupt() == 0, node.output()


def test_engine_piper_without_piper_is_one_line_and_exit_2(tmp_path):
    no_piper = tmp_path / 'python-without-piper'
    no_piper.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    no_piper.chmod(0o755)
    with NodeProcess('tts', ros_env(unique_domain_id()),
                     {'engine': 'piper', 'piper_python': str(no_piper)}) as node:
        assert node.wait(60) == 2
        lines = node.output().strip().splitlines()
        assert lines[-1].startswith('tts: invalid parameters: ') and 'piper-tts is not installed' \
            in lines[-1] and 'Traceback' not in node.output(), node.output()


def test_ctl_say_through_piper_moves_a_running_pipelines_lips_in_sync(tmp_path):
    """The issue's "done when": a portable generator, the tts node on Piper and the recorder run;
    `avatar-forcing-ctl say` sends the sentence to the tts node; the jaw follows it, in time."""
    env = ros_env(unique_domain_id())
    bag = tmp_path / 'bag'
    ctl = shutil.which('avatar-forcing-ctl')
    with NodeProcess('generator', env, {'backend': 'portable'}) as generator, \
            NodeProcess('tts', env, {'engine': 'piper'}) as tts, \
            NodeProcess('recorder', env, {'output': str(bag)}) as recorder:
        assert generator.wait_for_output('backend portable', 120), generator.output()
        assert tts.wait_for_output('tts ready: engine piper', 180), tts.output()
        piper = [pid for pid in child_pids(tts.process.pid) if '-m piper' in cmdline(pid)]
        assert piper and {os.getpriority(os.PRIO_PROCESS, pid) for pid in piper} == {10}, \
            'Piper synthesises at niceness 10 (synthesis_niceness): it yields to the avatar'
        if Path('/proc/self/autogroup').exists():    # its session's autogroup too: what counts against other nodes
            assert {Path(f'/proc/{pid}/autogroup').read_text().split()[-1] for pid in piper} == {'10'}
        assert recorder.wait_for_output('recording /avatar/motion', 60), recorder.output()
        said = subprocess.run(
            [ctl, '--timeout', '30', 'say', '--via', 'tts', 'Hello! It is good to see you. I am a '
             'robot face, and I can listen while you talk. Tell me about your day.'],
            env=env, capture_output=True, text=True, timeout=180)
        assert said.returncode == 0, said.stderr
        assert 'through the tts node' in said.stdout, said.stdout
        time.sleep(2.0)  # the generator answers the last chunk one latency budget (0.8 s) later
        assert recorder.interrupt() == 0, recorder.output()
    lipsync = evaluate_lipsync(bag, tmp_path / 'eval', env)
    assert lipsync['r_best'] >= 0.8 and abs(lipsync['best_lag_ms']) <= 40, lipsync
