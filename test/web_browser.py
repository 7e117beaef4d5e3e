"""Debian's chromium, headless, driven by selenium through Debian's chromedriver, with fake media
devices (a WAV file as the microphone) and the flags a root shell needs. Kiosk flags: README."""
from __future__ import annotations

import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')

STATS_JS = """
const done = arguments[arguments.length - 1];
window.afPeer.getStats().then((report) => {
  const out = {};
  report.forEach((s) => { if (s.type === 'inbound-rtp') out[s.kind] = s; });
  done(out);
}).catch((e) => done({error: String(e)}));
"""


def chromium(fake_microphone: Path | None = None, env: dict[str, str] | None = None,
             niceness: int = 0) -> webdriver.Chrome:
    """A headless chromium; ``env``: its environment (e.g. PULSE_SERVER/PULSE_SINK: where it plays);
    ``niceness`` > 0: the browser and every process it starts run at that lower CPU priority (a
    viewer on another machine, as far as the processes of this one are concerned)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if niceness == 0 else _niced_chromium(niceness))
    # a <video> whose stream has no frames yet delays the load event: wait for the DOM only
    options.page_load_strategy = 'eager'
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 f'--user-data-dir={tempfile.mkdtemp(prefix="af_chromium_")}',
                 '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
                 '--autoplay-policy=no-user-gesture-required',
                 '--ignore-certificate-errors',    # the node's self-signed certificate
                 '--window-size=1000,700'):
        options.add_argument(flag)
    if fake_microphone is not None:
        options.add_argument(f'--use-file-for-fake-audio-capture={fake_microphone}')
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), env=env), options=options)
    driver.set_script_timeout(20)
    return driver


def _niced_chromium(niceness: int) -> Path:
    """An executable that runs chromium under ``nice`` (its children inherit the priority)."""
    wrapper = Path(tempfile.mkdtemp(prefix='af_chromium_nice_')) / 'chromium'
    wrapper.write_text(f'#!/bin/sh\nexec nice -n {int(niceness)} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def inbound_stats(driver: webdriver.Chrome) -> dict:
    """The page's peer connection's inbound-rtp stats by kind ('video', 'audio')."""
    return driver.execute_async_script(STATS_JS)
