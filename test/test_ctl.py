"""avatar-forcing-ctl as a user runs it (the installed command, a separate process) against real
node processes over DDS: param list/get/set/describe with the nodes' refusals, status from a
running generator, topic rates, say/play as real-time AudioChunks, and a said sentence moving a
running generator's lips in sync. Every failure is one line on stderr and a non-zero exit;
Ctrl-C never prints a traceback. Wide timing bounds only."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile
from rclpy.qos import QoSProfile, ReliabilityPolicy

from avatar_forcing_ros.conversions import audio_chunk_to_array, stamp_to_nanoseconds
from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.media.speech_synthesis import espeak_to_wav
from avatar_forcing_ros.msg import AudioChunk
from ros_testing import Listener, NodeProcess, evaluate_lipsync, ros_env, unique_domain_id

CTL = shutil.which('avatar-forcing-ctl')
RATE, CHUNK_NS = 16000, 20_000_000
RATE_LINE = re.compile(r'^(/[\w/]+): ([\d.]+) Hz, (\d+) msgs, (.*)$', re.MULTILINE)


def ctl(env: dict, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    assert CTL, 'avatar-forcing-ctl is not installed: run scripts/setup.sh'
    return subprocess.run([CTL, '--timeout', str(timeout_s), *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s + 90)


def assert_one_line_failure(result: subprocess.CompletedProcess, *texts: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.strip()
    assert '\n' not in line and line.startswith('avatar-forcing-ctl: error: '), result.stderr
    for text in texts:
        assert text in line, line


@pytest.fixture(scope='module')
def generator():
    """A portable generator process without inputs (it still publishes at 25 Hz)."""
    env = ros_env(unique_domain_id())
    with NodeProcess('generator', env, {'backend': 'portable'}) as process:
        assert process.wait_for_output('backend portable', 120), process.output()
        yield env
        assert process.interrupt() == 0 and 'Traceback' not in process.output()


def test_param_list_get_set_describe_and_refusals(generator):
    env = generator
    listed = ctl(env, 'param', 'list', '/generator')
    assert listed.returncode == 0, listed.stderr
    names = listed.stdout.split()
    assert {'nfe', 'latency_budget_ms', 'backend', 'use_sim_time'} <= set(names) and names == sorted(names)
    assert ctl(env, 'param', 'get', 'generator', 'backend').stdout.strip() == '"portable"'
    assert ctl(env, 'param', 'get', '/generator', 'latency_budget_ms').stdout.strip() == '800.0'

    changed = ctl(env, 'param', 'set', '/generator', 'nfe', '8')
    assert changed.returncode == 0 and changed.stdout.strip() == 'set /generator nfe = 8', changed
    assert ctl(env, 'param', 'get', '/generator', 'nfe').stdout.strip() == '8'

    # the node's own validation refuses, with its reason, and nothing changes
    assert_one_line_failure(ctl(env, 'param', 'set', '/generator', 'sessions', '2nd'),
                            'refused sessions = "2nd"', 'not a ROS namespace token')
    assert ctl(env, 'param', 'get', '/generator', 'sessions').stdout.strip() == '""'
    assert_one_line_failure(ctl(env, 'param', 'set', '/generator', 'backend', 'avatar_forcing'),
                            'read-only')
    assert_one_line_failure(ctl(env, 'param', 'set', '/generator', 'nfe', 'abc'),
                            'nfe has type integer, the value type string')
    assert_one_line_failure(ctl(env, 'param', 'get', '/generator', 'no_such'), "no parameter 'no_such'")
    assert_one_line_failure(ctl(env, 'param', 'set', '/generator', 'no_such', '1'), "no parameter 'no_such'")

    described = ctl(env, 'param', 'describe', '/generator', 'nfe')
    assert described.returncode == 0, described.stderr
    assert described.stdout.startswith('/generator nfe: integer, settable at run time\n')
    assert 'range ' in described.stdout
    assert_one_line_failure(ctl(env, 'param', 'list', '/no_such_node', timeout_s=3.0),
                            'no node /no_such_node', '/generator')


def test_status_summarises_the_running_generator(generator):
    once = ctl(generator, 'status', '--once')
    assert once.returncode == 0, once.stderr
    line = once.stdout.strip()
    assert '\n' not in line and line.startswith('portable (portable/face_params_v1) | block ')
    assert re.search(r'latency \d+ ms \(budget \d+\)', line), line
    assert int(re.search(r'frames (\d+), hold (\d+)', line)[1]) > 0, line
    assert 'inputs: camera never, user audio never, avatar audio never' in line  # no inputs here

    live = subprocess.Popen([CTL, 'status'], env=generator, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = [live.stdout.readline() for _ in range(3)]  # one per GeneratorStatus (1 Hz)
    live.send_signal(signal.SIGINT)
    out, err = live.communicate(timeout=30)
    assert live.returncode == 0 and 'Traceback' not in err, err
    frames = [int(re.search(r'frames (\d+)', line)[1]) for line in lines]
    assert frames[0] < frames[1] < frames[2], lines

    assert_one_line_failure(ctl(generator, 'status', '--topic', 'no/status', timeout_s=3.0),
                            'no GeneratorStatus on /no/status within 3 s')


def test_topics_reports_rates_of_a_running_generator(generator):
    result = ctl(generator, 'topics', 'avatar/motion', 'avatar/generator_status', 'no/topic',
                 '--period', '3', '--count', '2')
    assert result.returncode == 0, result.stderr
    reports = result.stdout.strip().split('\n\n')
    assert len(reports) == 2, result.stdout
    rates = {name: float(hz) for name, hz, _, _ in RATE_LINE.findall(reports[-1])}
    assert 15 < rates['/avatar/motion'] < 35, reports  # 25 fps; wide bounds
    assert 0.3 < rates['/avatar/generator_status'] < 2.0, reports  # 1 Hz
    assert '/no/topic: not published' in reports[-1]
    assert re.search(r'/avatar/motion: .* age \d+ ms', reports[-1]), reports  # from header.stamp

    everything = ctl(generator, 'topics', '--count', '1')
    assert everything.returncode == 0, everything.stderr
    assert '/avatar/motion: ' in everything.stdout and '/rosout' not in everything.stdout


def _say_and_collect(args: list[str], listener: Listener, env: dict) -> tuple:
    chunks = listener.collect(AudioChunk, 'avatar/audio',
                              QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE),
                              with_arrival=True)
    process = subprocess.Popen([CTL, '--timeout', '30', *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert listener.spin_until(lambda: process.poll() is not None, 120)
    out, err = process.communicate()
    listener.spin_until(lambda: False, 0.3)  # anything still in flight
    return process.returncode, out, err, chunks


def _check_stream(chunks: list, expected: np.ndarray, frame_id: str) -> None:
    messages = [m for m, _ in chunks]
    samples = np.concatenate([audio_chunk_to_array(m)[0][:, 0] for m in messages])
    assert np.array_equal(samples, expected)  # every sample, once, in order: the right duration
    assert all(len(m.samples) == 320 for m in messages[:-1]) and 0 < len(messages[-1].samples) <= 320
    assert all(m.sample_rate == RATE and m.channels == 1 and m.header.frame_id == frame_id
               for m in messages)
    assert [m.sequence for m in messages] == list(range(len(messages)))
    stamps = np.array([stamp_to_nanoseconds(m.header.stamp) for m in messages])
    assert np.array_equal(np.diff(stamps), np.full(len(messages) - 1, CHUNK_NS))  # steady, monotonic
    duration = len(expected) / RATE
    arrival_span = chunks[-1][1] - chunks[0][1]
    assert 0.8 * (duration - 0.02) < arrival_span < duration + 1.0  # real-time pace, wide bounds
    assert abs(stamps[0] - time.time_ns()) < 60e9  # on the ROS (system) clock, not from zero


def test_say_speaks_in_real_time_with_steady_stamps(tmp_path):
    text = 'Hello, I am the avatar. Nice to meet you.'
    espeak_to_wav(text, tmp_path / 'reference.wav')
    expected = load_audio(tmp_path / 'reference.wav', RATE)
    domain = unique_domain_id()
    with Listener(domain) as listener:
        code, out, err, chunks = _say_and_collect(['say', text], listener, ros_env(domain))
        assert code == 0, err
        assert out.strip() == f'said {text!r}: {len(expected) / RATE:.2f} s in {len(chunks)} chunks'
        _check_stream(chunks, expected, 'say')


def test_play_resamples_a_file_and_failures_are_one_line(tmp_path):
    rng = np.random.default_rng(4)
    stereo = (0.3 * rng.standard_normal((int(0.9 * 22050), 2))).astype(np.float32)
    soundfile.write(tmp_path / 'clip.wav', stereo, 22050, subtype='FLOAT')
    expected = load_audio(tmp_path / 'clip.wav', RATE)
    domain = unique_domain_id()
    env = ros_env(domain)
    with Listener(domain) as listener:
        code, out, err, chunks = _say_and_collect(['play', str(tmp_path / 'clip.wav')], listener, env)
        assert code == 0, err
        _check_stream(chunks, expected, 'clip.wav')
    # no listener any more: nobody subscribes
    assert_one_line_failure(ctl(env, 'say', 'hello', timeout_s=2.0), 'no subscriber on /avatar/audio')
    assert_one_line_failure(ctl(env, 'play', str(tmp_path / 'missing.wav')), 'audio file not found')
    assert_one_line_failure(ctl(env, 'say', 'hello', '--voice', 'nosuchvoice'), 'espeak-ng', 'does not exist')
    assert_one_line_failure(ctl(env, 'say', '  '), 'nothing to say')


def test_ctrl_c_cuts_speech_off_cleanly(tmp_path):
    domain = unique_domain_id()
    env = ros_env(domain)
    with Listener(domain) as listener:
        chunks = listener.collect(AudioChunk, 'avatar/audio', QoSProfile(depth=1000))
        process = subprocess.Popen(
            [CTL, '--timeout', '30', 'say', 'This sentence is long enough to be cut off well before '
             'its end by a Control C from the user at the keyboard.'],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert listener.spin_until(lambda: len(chunks) >= 10, 120)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 130, (out, err)
        assert err.strip() == 'avatar-forcing-ctl: interrupted', err
        listener.spin_until(lambda: False, 0.5)
        assert len(chunks) < 150  # cut off: the sentence lasts about 5 s (250 chunks)


def test_said_sentence_moves_a_running_generators_lips_in_sync(tmp_path):
    """The end to end point of `say`: a portable generator's jaw follows the sentence, in time
    (lip-sync r from the recorded bag, as avatar-forcing-evaluate computes it)."""
    env = ros_env(unique_domain_id())
    bag = tmp_path / 'bag'
    with NodeProcess('generator', env, {'backend': 'portable'}) as generator, \
            NodeProcess('recorder', env, {'output': str(bag)}) as recorder:
        assert generator.wait_for_output('backend portable', 120), generator.output()
        assert recorder.wait_for_output('recording /avatar/motion', 60), recorder.output()
        said = ctl(env, 'say', 'Hello! It is good to see you. I am a robot face, and I can listen '
                   'while you talk. Tell me about your day.')
        assert said.returncode == 0, said.stderr
        time.sleep(2.0)  # the generator answers the last chunk one latency budget (0.8 s) later
        assert recorder.interrupt() == 0, recorder.output()
    lipsync = evaluate_lipsync(bag, tmp_path / 'eval', env)
    assert lipsync['r_best'] >= 0.8 and abs(lipsync['best_lag_ms']) <= 40, lipsync
