"""The end-to-end point of the operator page: speech from the operator's (fake) microphone in a
real browser, over WebRTC to web_display, onto avatar/audio, moves a running portable generator's
lips in time (lip-sync r from the recorded bag, as avatar-forcing-evaluate computes it)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from ros_testing import NodeProcess, evaluate_lipsync, ros_env, unique_domain_id
from test_web_display_browser import speech_wav
from web_browser import chromium
from web_clients import free_port

TOKEN = 'lipsync-test-token'
pytestmark = pytest.mark.skipif(not Path('/usr/bin/chromedriver').exists(),
                                reason='Debian chromium-driver missing: run scripts/setup.sh')


def test_operator_speech_moves_the_generators_lips(tmp_path):
    env = ros_env(unique_domain_id())
    bag, port = tmp_path / 'bag', free_port()
    with NodeProcess('generator', env, {'backend': 'portable'}) as generator, \
            NodeProcess('web_display', env, {'port': port, 'operator_token': TOKEN,
                                             'presentation_delay_ms': 300.0}) as web, \
            NodeProcess('recorder', env, {'output': str(bag)}) as recorder:
        assert generator.wait_for_output('backend portable', 120), generator.output()
        assert web.wait_for_output('operator page: https://', 60), web.output()
        assert recorder.wait_for_output('recording /avatar/motion', 60), recorder.output()
        driver = chromium(fake_microphone=speech_wav(tmp_path / 'operator.wav'))
        try:
            driver.get(f'https://127.0.0.1:{port}/operator?token={TOKEN}')
            deadline = time.monotonic() + 40
            while driver.execute_script("return document.getElementById('state').textContent") != 'connected':
                assert time.monotonic() < deadline, 'the operator page did not connect'
                time.sleep(0.2)
            driver.find_element(By.ID, 'open').click()
            time.sleep(8.0)                       # the sentence (about 6 s) and its answer
            driver.find_element(By.ID, 'open').click()
            time.sleep(2.0)                       # the generator answers one budget later
        finally:
            driver.quit()
        assert recorder.interrupt() == 0, recorder.output()
    lipsync = evaluate_lipsync(bag, tmp_path / 'eval', env)
    print(f'operator speech -> generator: lip-sync {lipsync}')
    # the estimated capture stamps carry the browser's and the network's delay uncertainty
    assert lipsync['r_best'] >= 0.6 and abs(lipsync['best_lag_ms']) <= 120, lipsync
