"""web_display in a real browser: Debian's chromium (headless, fake media devices) against the
real node over WebRTC on localhost.

- viewer: the A/V test pattern (test/web_pattern_publisher.py: a marker square and a beep that
  share a media time every second) arrives at 25 fps with audio; the page measures when each
  marker is painted (requestVideoFrameCallback) and each beep heard (WebAudio), the browser plays
  into a PulseAudio null sink whose monitor tells when each beep came out of its speaker
  (test/speaker_monitor.py), and both offsets stay small;
- several viewers at once: two measuring viewer pages and a kiosk page, as three windows of one
  chromium, each receive their own stream (frames and sound) while the node counts three viewers;
- operator: the browser's fake microphone (a WAV of espeak-ng speech) reaches avatar/audio while
  the open mic is on, as 16 kHz chunks carrying the speech.
Screenshots of both pages go to the test's tmp_path. Figures under load: bench/bench_web.py.
"""
from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from diagnostic_msgs.msg import DiagnosticArray

from avatar_forcing_ros.msg import AudioChunk
from ros_testing import REPO, Listener, NodeProcess, ros_env, unique_domain_id
from speaker_monitor import SinkRecorder
from web_browser import Page, chromium, inbound_stats, open_pages
from web_clients import free_port

TOKEN = 'browser-test-token'
DELAY_MS = 300.0
pytestmark = pytest.mark.skipif(not Path('/usr/bin/chromedriver').exists(),
                                reason='Debian chromium-driver missing: run scripts/setup.sh')


@pytest.fixture(scope='module')
def domain():
    return unique_domain_id()


@pytest.fixture(scope='module')
def node(domain):
    port = free_port()
    with NodeProcess('web_display', ros_env(domain), params={
            'port': port, 'operator_token': TOKEN, 'presentation_delay_ms': DELAY_MS}) as process:
        assert process.wait_for_output('operator page: https://', 30), process.output()
        yield f'https://127.0.0.1:{port}', process


def offsets_ms(markers: list[float], beeps: list[float]) -> list[float]:
    """For each marker painted, the nearest beep heard minus it (ms; > 0: the sound is late)."""
    return [min((b - m for b in beeps), key=abs) for m in markers if beeps]


def node_counters(diagnostics: list) -> tuple[float, dict[str, str]]:
    """(stamp s, values) of the newest web_display diagnostics."""
    for array in reversed(diagnostics):
        for status in array.status:
            if 'web pages' in status.name:
                return (array.header.stamp.sec + array.header.stamp.nanosec * 1e-9,
                        {v.key: v.value for v in status.values})
    return 0.0, {}


def test_viewer_gets_25_fps_with_audio_in_sync(node, domain, tmp_path, pulseaudio_null_sink):
    base, process = node
    sink, pulse_env = pulseaudio_null_sink
    pattern = subprocess.Popen([sys.executable, str(REPO / 'test' / 'web_pattern_publisher.py')],
                               env=ros_env(domain), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    driver = chromium(env=pulse_env)            # its sound plays into the sink
    try:
        with Listener(domain) as listener, SinkRecorder(pulse_env, sink) as speaker:
            diagnostics = listener.collect(DiagnosticArray, '/diagnostics')
            driver.get(f'{base}/viewer?measure=1')
            assert listener.spin_until(lambda: driver.execute_script('return afStats.frames') >= 50, 40)
            listener.spin_until(lambda: False, 10.0)   # the browser's A/V synchronisation settles
            first, node_first = inbound_stats(driver), node_counters(diagnostics)
            driver.execute_script('afStats.markers = []; afStats.beeps = [];')
            speaker.clear()
            listener.spin_until(lambda: False, 8.0)
            last, node_last = inbound_stats(driver), node_counters(diagnostics)
            heard = speaker.onsets()
        stats = driver.execute_script('return afStats')
        origin = driver.execute_script('return performance.timeOrigin')
        driver.save_screenshot(str(tmp_path / 'viewer.png'))
    finally:
        driver.quit()
        pattern.terminate()
        pattern.wait(10)
    seconds = (last['video']['timestamp'] - first['video']['timestamp']) / 1000
    fps = (last['video']['framesDecoded'] - first['video']['framesDecoded']) / seconds
    node_delta = {key: int(node_last[1][key]) - int(node_first[1][key]) for key in
                  ('avatar_frames_received', 'avatar_frames_sent', 'avatar_frames_sent_late',
                   'avatar_frames_dropped_for_slow_viewers', 'speech_samples_late')}
    node_fps = node_delta['avatar_frames_received'] / (node_last[0] - node_first[0])
    decoded = last['video']['framesDecoded'] - first['video']['framesDecoded']
    audio_s = (last['audio']['totalSamplesReceived'] - first['audio']['totalSamplesReceived']) / 48000
    offsets = offsets_ms(stats['markers'], stats['beeps'])
    speaker_offsets = offsets_ms([origin + m for m in stats['markers']], [1000 * t for t in heard])
    print(f'viewer: {fps:.1f} fps decoded of {node_fps:.1f} fps the node received (25 sent), '
          f'{audio_s:.1f} s of audio in {seconds:.1f} s, A/V offsets (ms, + = sound later) '
          f'{[round(o) for o in offsets]}, from its speaker {[round(o) for o in speaker_offsets]}; '
          f'node in the window: {node_delta}')
    assert (tmp_path / 'viewer.png').stat().st_size > 2_000
    assert stats['width'] == 512
    # Wide sanity bounds: this test must pass on a 2-core machine saturated by other work, where
    # the encoder and the browser starve (goals: >= 24 fps, |offset| <= 40 ms; bench/bench_web.py
    # measures them). A broken path (no video, no sound, stamps ignored) fails them.
    assert fps >= 10.0
    # the node counts what it sent this viewer (its diagnostics come once a second: +-25 frames)
    assert decoded - 30 <= node_delta['avatar_frames_sent'] <= node_delta['avatar_frames_received'] + 30, node_delta
    assert audio_s > 0.8 * seconds
    assert len(stats['beeps']) >= 5 and len(stats['markers']) >= 5
    assert abs(statistics.median(offsets)) <= 250.0, offsets
    assert len(heard) >= 5, heard                                  # the beeps came out of the speaker
    assert abs(statistics.median(speaker_offsets)) <= 250.0, speaker_offsets


def speech_wav(path: Path) -> Path:
    subprocess.run(['espeak-ng', '-w', str(path), '-s', '150',
                    'Hello, I am speaking through the robot. Can you hear me? This is a test of the operator page.'],
                   check=True)
    return path


def test_operator_microphone_reaches_avatar_audio(node, domain, tmp_path):
    base, process = node
    pattern = subprocess.Popen([sys.executable, str(REPO / 'test' / 'web_pattern_publisher.py'), '--no-audio',
                                '--camera'], env=ros_env(domain), stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)   # the avatar and the camera on the page
    driver = chromium(fake_microphone=speech_wav(tmp_path / 'operator.wav'))
    with Listener(domain) as listener:
        chunks = listener.collect(AudioChunk, 'avatar/audio')
        try:
            driver.get(f'{base}/operator?token={TOKEN}')
            assert listener.spin_until(lambda: driver.execute_script(
                "return document.getElementById('state').textContent") == 'connected', 40), \
                driver.execute_script("return document.getElementById('state').textContent")
            listener.spin_until(lambda: False, 1.0)
            assert chunks == [], 'nothing is sent before the operator talks'
            driver.find_element(By.ID, 'open').click()
            assert listener.spin_until(lambda: len(chunks) >= 150, 30), f'{len(chunks)} chunks'
            report = driver.execute_script('return window.afOperator.reports.slice(-1)[0]')
            camera = driver.execute_script('return window.afOperator')   # the robot camera's panel
            driver.save_screenshot(str(tmp_path / 'operator.png'))
            driver.find_element(By.ID, 'mute').click()
            settled = time.monotonic() + 10.0   # what was in flight when muted may still arrive
            while time.monotonic() < settled:
                muted_at = len(chunks)
                listener.spin_until(lambda: False, 1.0)
                if len(chunks) == muted_at:
                    break
            listener.spin_until(lambda: False, 2.0)
            after_mute = len(chunks) - muted_at
        finally:
            driver.quit()
            pattern.terminate()
            pattern.wait(10)
    samples = np.concatenate([np.frombuffer(c.samples, np.float32) for c in chunks])
    rms = np.sqrt(np.mean(samples ** 2))
    print(f'operator: {len(chunks)} chunks, rms {rms:.3f}, page report {report}')
    assert {c.sample_rate for c in chunks} == {16000}
    assert rms > 0.01, 'the fake microphone speaks: the chunks must carry it'
    assert after_mute == 0, 'mute stops the avatar voice'
    assert report is not None and report['mic_to_speaker_ms'] >= DELAY_MS
    assert camera['cameraFrames'] >= 25 and camera['cameraWidth'] == 512, camera
    assert (tmp_path / 'operator.png').stat().st_size > 2_000


def test_several_viewers_at_once_each_get_their_own_stream(node, domain, tmp_path):
    base, process = node
    pattern = subprocess.Popen([sys.executable, str(REPO / 'test' / 'web_pattern_publisher.py')],
                               env=ros_env(domain), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        with contextlib.ExitStack() as browsers, Listener(domain) as listener:
            diagnostics = listener.collect(DiagnosticArray, '/diagnostics')
            pages = open_pages(browsers, f'{base}/viewer?measure=1', 2, shared=True)
            pages.append(Page.open(pages[0].driver, f'{base}/viewer?kiosk=1', new_window=True))
            assert listener.spin_until(lambda: all(p.script('return afStats.frames') >= 50 for p in pages), 60), \
                [p.script('return afStats.frames') for p in pages]
            # (>= : a page of an earlier test may not have timed out yet)
            assert listener.spin_until(lambda: int(node_counters(diagnostics)[1].get('viewers', 0)) >= 3, 10), \
                node_counters(diagnostics)
            first = [p.stats() for p in pages]
            for page in pages[:2]:
                page.script('afStats.markers = []; afStats.beeps = [];')
            listener.spin_until(lambda: False, 6.0)
            last = [p.stats() for p in pages]
            stats = [p.script('return afStats') for p in pages]
            pages[2].driver.switch_to.window(pages[2].window)
            pages[2].driver.save_screenshot(str(tmp_path / 'kiosk.png'))
    finally:
        pattern.terminate()
        pattern.wait(10)
    fps = [(b['video']['framesDecoded'] - a['video']['framesDecoded'])
           / ((b['video']['timestamp'] - a['video']['timestamp']) / 1000) for a, b in zip(first, last)]
    audio = [b['audio']['totalSamplesReceived'] - a['audio']['totalSamplesReceived'] for a, b in zip(first, last)]
    print(f'three windows of one chromium: {[round(f, 1) for f in fps]} fps decoded, audio samples {audio}, '
          f'beeps heard in the measuring pages {[len(s["beeps"]) for s in stats[:2]]}')
    assert (tmp_path / 'kiosk.png').stat().st_size > 2_000
    # wide bounds (a loaded 2-core machine; bench/bench_web.py measures): every window decodes its
    # own stream and plays its own sound, none is starved as a background window
    assert all(f >= 8.0 for f in fps), fps
    assert all(a > 48000 * 3 for a in audio), audio
    assert [s['width'] for s in stats] == [512] * 3
    assert all(len(s['beeps']) >= 3 and len(s['markers']) >= 3 for s in stats[:2]), \
        [(len(s['beeps']), len(s['markers'])) for s in stats[:2]]


def test_viewer_reconnects_by_itself_after_the_node_restarts(domain, tmp_path):
    port = free_port()
    params = {'port': port, 'presentation_delay_ms': DELAY_MS}
    driver = chromium()
    state = "return document.getElementById('state').textContent"

    def wait_state(predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while not predicate(text := driver.execute_script(state)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return text

    try:
        with NodeProcess('web_display', ros_env(domain), params=params) as first:
            assert first.wait_for_output('viewer page: https://', 30), first.output()
            driver.get(f'https://127.0.0.1:{port}/viewer')
            assert wait_state(lambda s: s == 'connected', 40) == 'connected'
        assert wait_state(lambda s: s.startswith('reconnecting'), 40).startswith('reconnecting')
        with NodeProcess('web_display', ros_env(domain), params=params) as second:
            assert second.wait_for_output('viewer page: https://', 30), second.output()
            assert wait_state(lambda s: s == 'connected', 60) == 'connected'   # no reload, no click
        driver.save_screenshot(str(tmp_path / 'viewer_reconnected.png'))
    finally:
        driver.quit()
