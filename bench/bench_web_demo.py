"""Web viewers while the whole demo pipeline runs on this machine (issue 16: "four viewers on this
2-core machine while the pipeline keeps 25 Hz with no hold frames").

Runs the demo with its web pages (`python -m avatar_forcing_ros.tools.demo --web`: portable
backend, synthetic camera and microphone, no window, a session bag and its evaluation) and
--viewers headless chromium viewers on the plain viewer page (what a person opens; no in-page
measurement). The browsers start before the demo (a viewer's browser on another machine costs the
robot nothing to start); their pages load once web_display serves. Reported: the frames each
viewer decoded per second over the middle of the session, the CPU of every process (the nodes by
name, the browsers by kind) over the same window, from the demo's own evaluation of its bag the
avatar's image rate, hold frames and end-to-end latency over the whole session, and from the bag
the hold frames and images recorded while the viewers connect and in the measured window. The
browsers share this machine's cores with the pipeline: on a robot they run elsewhere:
--browser-niceness 19 gives the pipeline's processes the CPU first, as if the viewers were on
other machines; --shared-browser opens the viewers as windows of one chromium; --viewers 0 is the
pipeline alone.

    source scripts/env.sh && python bench/bench_web_demo.py --viewers 0,1,4 --duration 90 \
        [--browser-niceness 19] [--shared-browser]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from avatar_forcing_ros.evaluation.evaluate import EvaluationOptions, load_session
from avatar_forcing_ros.evaluation.msg_types import build_typestore
from avatar_forcing_ros.evaluation.report import SUMMARY_ROWS, lookup
from avatar_forcing_ros.tools.interrupt import interruptible

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test'))   # the browser helpers of the tests

from bench_web import cpu_seconds                    # noqa: E402
from web_browser import chromium, open_pages         # noqa: E402
from web_clients import free_port                    # noqa: E402

EVALUATED = {'image rate (Hz)': 'image_rate_hz', 'hold frames': 'hold_frames',
             'end-to-end latency p50 (ms)': 'latency_ms_p50', 'end-to-end latency p99 (ms)': 'latency_ms_p99'}


def process_cpu_seconds() -> dict[int, tuple[float, str]]:
    """(CPU seconds, group name) of every process: a node by its ROS name, chromium by its kind."""
    out = {}
    for pid in map(int, filter(str.isdigit, os.listdir('/proc'))):
        try:
            cmd = Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
            used = cpu_seconds(pid)
        except OSError:           # the process ended meanwhile
            continue
        node = re.search(r'__node:=(\S+)', cmd)
        if node:
            group = node.group(1)
        elif 'chromium' in cmd:
            kind = re.search(r'--type=(\S+)', cmd)
            group = 'chromium ' + (kind.group(1) if kind else 'browser')
        else:
            continue
        out[pid] = (used, group)
    return out


def cpu_by_group(before: dict, after: dict, seconds: float) -> dict[str, float]:
    used: collections.Counter = collections.Counter()
    for pid, (cpu, group) in after.items():
        used[group] += (cpu - before.get(pid, (0.0, group))[0]) / seconds
    return {group: round(cores, 3) for group, cores in used.most_common() if cores >= 0.005}


def evaluation(out: Path) -> dict:
    """The demo's evaluation of its session bag (evaluation.json): the rows this bench reports."""
    path = out / 'evaluation' / 'evaluation.json'
    if not path.exists():
        return {}
    result = json.loads(path.read_text())['bags'][0]
    return {EVALUATED[label]: lookup(result, keys) for label, keys, _ in SUMMARY_ROWS if label in EVALUATED}


def in_windows(out: Path, edges_ns: list[int]) -> list[dict]:
    """Between each two consecutive wall times of ``edges_ns``: the hold frames and the avatar
    images (JPEG, the display's topic) the session bag recorded, by arrival, and that image rate."""
    session = load_session(out / 'session_bag', build_typestore(), EvaluationOptions())
    motion, images = session.avatar_motion, session.avatar_image_compressed
    windows = []
    for start, end in zip(edges_ns, edges_ns[1:]):
        holds = None if motion is None else int(motion.is_hold[(motion.log_ns >= start) & (motion.log_ns < end)].sum())
        count = rate = None
        if images is not None and len(images):
            start = max(start, int(images.log_ns[0]))     # web_display may serve before the first image
            count = int(((images.log_ns >= start) & (images.log_ns < end)).sum())
            rate = round(count / ((end - start) / 1e9), 2) if end > start else None
        windows.append({'hold_frames': holds, 'images': count, 'image_rate_hz': rate})
    return windows


def run(viewers: int, duration: float, out: Path, niceness: int, shared: bool) -> dict:
    port = free_port()
    log: list[str] = []
    started = threading.Event()
    with contextlib.ExitStack() as browsers:     # they quit at its end; the demo runs on to its own
        # The browsers start before the demo (a viewer's browser on another machine costs the robot
        # nothing to start); their pages load once web_display serves: what a viewer connecting costs.
        pages = open_pages(browsers, 'about:blank', viewers, shared, lambda _: chromium(niceness=niceness))
        demo = subprocess.Popen([sys.executable, '-m', 'avatar_forcing_ros.tools.demo', '--web', '--web-port',
                                 str(port), '--duration', str(duration), '--camera', 'synthetic',
                                 '--microphone', 'synthetic', '--display', 'off', '--out', str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def read_log() -> None:
            for line in demo.stdout:
                log.append(line)
                if 'viewer page: https://' in line:     # web_display serves
                    started.set()
        threading.Thread(target=read_log, daemon=True).start()
        try:
            t0 = time.monotonic()
            while not started.is_set() and demo.poll() is None and time.monotonic() - t0 < 300:
                time.sleep(0.5)
            opened_ns = time.time_ns()
            for page in pages:
                page.load(f'https://127.0.0.1:{port}/viewer')
            window = max(10.0, duration - 35.0)      # the session's middle: after the pages connected
            time.sleep(15.0)
            first, cpu_before, t1 = [p.stats() for p in pages], process_cpu_seconds(), time.monotonic()
            t1_ns = time.time_ns()
            time.sleep(window)
            last, cpu_after, t2 = [p.stats() for p in pages], process_cpu_seconds(), time.monotonic()
            t2_ns = time.time_ns()
        except BaseException:
            if demo.poll() is None:
                demo.terminate()
            raise
    status = demo.wait()
    fps = [round((b['video']['framesDecoded'] - a['video']['framesDecoded'])
                 / ((b['video']['timestamp'] - a['video']['timestamp']) / 1000), 1)
           if 'video' in a and 'video' in b else None for a, b in zip(first, last)]
    cpu = cpu_by_group(cpu_before, cpu_after, t2 - t1)
    return {'viewers': viewers, 'browser_niceness': niceness, 'shared_browser': shared, 'demo_exit': status,
            'fps_decoded_per_viewer': fps, **evaluation(out),
            **dict(zip(('viewers_connecting', 'measured_window'), in_windows(out, [opened_ns, t1_ns, t2_ns]))),
            'cpu_cores_total': round(sum(cpu.values()), 2), 'cpu_cores': cpu,
            'demo_log_tail': ''.join(log[-3:]).strip() if status else ''}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--viewers', default='0,4', help='comma-separated viewer counts, one demo each (default 0,4)')
    p.add_argument('--duration', type=float, default=90.0, help="each demo's session length (s)")
    p.add_argument('--browser-niceness', type=int, default=0, choices=range(20), metavar='0..19',
                   help='run the browsers at this lower CPU priority, as if on other machines (default 0)')
    p.add_argument('--shared-browser', action='store_true',
                   help='open the viewers as windows of one chromium instead of one chromium each')
    args = p.parse_args()
    print(f'command: python bench/bench_web_demo.py --viewers {args.viewers} --duration {args.duration:g} '
          f'--browser-niceness {args.browser_niceness}{" --shared-browser" if args.shared_browser else ""}; '
          f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores', flush=True)
    with tempfile.TemporaryDirectory(prefix='bench_web_demo_') as tmp:
        for count in (int(v) for v in args.viewers.split(',')):
            print(json.dumps(run(count, args.duration, Path(tmp) / f'viewers{count}', args.browser_niceness,
                                 args.shared_browser)),
                  flush=True)


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
