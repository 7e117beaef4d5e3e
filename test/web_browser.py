"""Debian's chromium, headless, driven by selenium through Debian's chromedriver, with fake media
devices (a WAV file as the microphone) and the flags a root shell needs. Kiosk flags: README.

A :class:`Page` is one page in a window of such a browser: a browser may hold several (one
window each, as a person with several windows open), so that benchmarks can open N viewers as
N windows of one chromium instead of N chromiums."""
from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from avatar_forcing_ros.process_priority import lower_session_priority

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
    ``niceness`` > 0: the browser and every process it starts run in a session of their own whose
    autogroup has that CPU niceness (a viewer on another machine, as far as the processes of this
    one are concerned; chromium sets its own processes' nice values, so only the session's counts)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # a <video> whose stream has no frames yet delays the load event: wait for the DOM only
    options.page_load_strategy = 'eager'
    for flag in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 f'--user-data-dir={tempfile.mkdtemp(prefix="af_chromium_")}',
                 '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
                 '--autoplay-policy=no-user-gesture-required',
                 # every window plays and paints at full rate, as a window on its own screen would
                 '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
                 '--disable-backgrounding-occluded-windows',
                 '--ignore-certificate-errors',    # the node's self-signed certificate
                 '--window-size=1000,700'):
        options.add_argument(flag)
    if fake_microphone is not None:
        options.add_argument(f'--use-file-for-fake-audio-capture={fake_microphone}')
    service = Service(str(CHROMEDRIVER), env=env, popen_kw={'start_new_session': niceness > 0})
    driver = webdriver.Chrome(service=service, options=options)
    if niceness > 0:     # chromedriver's session, chromium's processes included, yields the CPU
        lower_session_priority(service.process.pid, niceness)
    driver.set_script_timeout(20)
    return driver


def inbound_stats(driver: webdriver.Chrome) -> dict:
    """The page's peer connection's inbound-rtp stats by kind ('video', 'audio')."""
    return driver.execute_async_script(STATS_JS)


@dataclass(frozen=True)
class Page:
    """One page of ``driver``: its window ``window`` (a window handle)."""

    driver: webdriver.Chrome
    window: str

    @classmethod
    def open(cls, driver: webdriver.Chrome, url: str, new_window: bool = False) -> Page:
        """Loads ``url`` in the driver's current window, or (``new_window``) in a new window."""
        if new_window:
            driver.switch_to.new_window('window')
        page = cls(driver, driver.current_window_handle)
        page.load(url)
        return page

    def load(self, url: str) -> None:
        """Navigates this page's window to ``url``."""
        self.driver.switch_to.window(self.window)
        self.driver.get(url)

    def script(self, source: str):
        """Runs ``source`` (JavaScript) in this page; returns what it returns."""
        self.driver.switch_to.window(self.window)
        return self.driver.execute_script(source)

    def stats(self) -> dict:
        """This page's inbound-rtp stats by kind (see :func:`inbound_stats`)."""
        self.driver.switch_to.window(self.window)
        return inbound_stats(self.driver)


def open_pages(stack: contextlib.ExitStack, url: str, count: int, shared: bool,
               new_browser: Callable[[int], webdriver.Chrome] = lambda _: chromium(),
               opened: Callable[[int, Page], None] | None = None) -> list[Page]:
    """``count`` pages of ``url``, each in a browser of its own (``new_browser(i)`` makes the
    i-th) or, ``shared``, each in a window of one browser; ``opened(i, page)`` (if given) is called
    once the i-th has loaded. The browsers quit when ``stack`` closes."""
    pages: list[Page] = []
    for i in range(count):
        if shared and pages:
            pages.append(Page.open(pages[0].driver, url, new_window=True))
        else:
            driver = new_browser(i)
            stack.callback(driver.quit)
            pages.append(Page.open(driver, url))
        if opened is not None:
            opened(i, pages[-1])
    return pages
