"""What does the web path add? (issue 16: media time to frame painted in the browser p50/p95/p99,
A/V offset, CPU per viewer)

Starts web_display and the A/V test pattern (test/web_pattern_publisher.py: 25 fps 512x512 frames
whose bottom row encodes their media time, a marker + beep every second) on a private ROS domain,
then for each viewer count opens that many headless chromium viewers (?measure=1) and, after a
warm-up, measures for --seconds: in each page, media time -> painted (requestVideoFrameCallback's
expected display time minus the frame's media time; minus presentation_delay_ms it is what the web
path adds), frames decoded per second, and the marker-to-beep offset; the browser's own view of the
A/V offset too: audio minus video `estimatedPlayoutTimestamp` of one getStats() call, every second
(what its lip-sync logic aligns, without the page's WebAudio path); in the node, its CPU time per
second (/proc) against the same run without viewers, and from its counters (the log line it writes
every 5 s) the frames it sent later than a frame period after their presentation time: whether
the node keeps pace, apart from the browsers that share this machine. With --speakers, what each
viewer's speaker plays is recorded too: every chromium plays into a null sink of a private
PulseAudio server, whose monitor (test/speaker_monitor.py) gives the wall-clock time each beep is
heard, against the time its marker frame is painted (`av_speaker_offset_ms`: the A/V offset a
person would perceive, without the ~25 ms of the page's WebAudio tap; the audio server and the
browsers' real audio output cost CPU of their own). With --shared-browser the viewers are windows
of one chromium (one browser, GPU and audio process for all; each window still its own renderer,
peer connection, decoders and audio stream, which --speakers moves to that viewer's sink) instead
of one chromium each. Prints one JSON line per viewer count.

    source scripts/env.sh && python bench/bench_web.py --viewers 1,2,4 --seconds 20 [--speakers] [--shared-browser]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.tools.pulse_server import PrivatePulseServer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test'))   # the browser and client helpers of the tests

from ros_testing import NodeProcess, ros_env, unique_domain_id   # noqa: E402
from speaker_monitor import SinkRecorder                         # noqa: E402
from test_web_display_browser import offsets_ms                  # noqa: E402
from web_browser import Page, chromium, open_pages              # noqa: E402
from web_clients import free_port                                # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def node_cpu(pid: int, seconds: float, each_second: Callable[[], None] | None = None) -> float:
    """The node's CPU use (fraction of one core) over ``seconds``, calling ``each_second`` (if
    given) once a second meanwhile."""
    start, t0 = cpu_seconds(pid), time.monotonic()
    while (left := seconds - (time.monotonic() - t0)) > 0:
        if each_second is not None:
            each_second()
        time.sleep(min(1.0, left))
    return (cpu_seconds(pid) - start) / (time.monotonic() - t0)


def playout_offset_sampler(pages: list[Page], offsets: list[float]) -> Callable[[], None]:
    """Appends, for every page, audio minus video estimatedPlayoutTimestamp (ms) of one getStats
    call to ``offsets``: + = the browser plays the sound later than the picture."""
    def sample() -> None:
        for page in pages:
            stats = page.stats()
            audio, video = (stats.get(kind, {}).get('estimatedPlayoutTimestamp') for kind in ('audio', 'video'))
            if audio and video:
                offsets.append(audio - video)
    return sample


def stream_router(pulse: PrivatePulseServer, timeout_s: float = 30.0,
                  settle_s: float = 3.0) -> Callable[[int, Page], None]:
    """For windows of one browser, which all play into its default sink: moves the audio streams
    of the i-th page (its media element's, its WebAudio context's), once they have appeared and
    no other came for ``settle_s``, to the i-th viewer's own sink."""
    known: set[str] = set()

    def route(i: int, page: Page) -> None:
        deadline, new, since = time.monotonic() + timeout_s, set(), time.monotonic()
        while time.monotonic() < deadline:
            listed = pulse.pactl('list', 'short', 'sink-inputs').stdout.splitlines()
            now_new = {line.split()[0] for line in listed if line.strip()} - known
            if now_new != new:
                new, since = now_new, time.monotonic()
            elif new and time.monotonic() - since >= settle_s:
                for stream in new:
                    pulse.pactl('move-sink-input', stream, pulse.sinks[i])
                known.update(new)
                return
            time.sleep(0.2)
        sys.exit(f'viewer {i}: its page opened no audio stream of its own within {timeout_s:.0f} s')
    return route


def node_counters(log: str) -> dict[str, int]:
    """The web_display node's counters of its newest periodic log line ('viewers 2, ...')."""
    lines = [line for line in log.splitlines() if 'avatar_frames_sent_late' in line]
    if not lines:
        return {}
    pairs = (item.strip().rsplit(' ', 1) for item in lines[-1].split(': ', 1)[-1].split(','))
    return {key: int(value) for key, value in pairs if value.isdigit()}


def measure(base: str, node, pulse: PrivatePulseServer | None, viewers: int, seconds: float,
            warm_up: float, shared_browser: bool) -> dict:
    pid = node.process.pid
    with contextlib.ExitStack() as stack:
        speakers = []
        if pulse is not None:                          # each viewer plays into a sink of its own
            speakers = [stack.enter_context(SinkRecorder(pulse.env, pulse.sinks[i])) for i in range(viewers)]
        pages = open_pages(stack, f'{base}/viewer?measure=1', viewers, shared_browser, lambda i: chromium(
            env=None if pulse is None else dict(pulse.env, PULSE_SINK=pulse.sinks[i])),
            stream_router(pulse) if pulse is not None and shared_browser else None)
        time.sleep(warm_up)
        first = [page.stats() for page in pages]
        for page in pages:
            page.script('afStats.latencies = []; afStats.markers = []; afStats.beeps = [];')
        for speaker in speakers:
            speaker.clear()
        playout: list[float] = []
        counted = node_counters(node.output())
        cpu = node_cpu(pid, seconds, playout_offset_sampler(pages, playout))
        last = [page.stats() for page in pages]
        counted = {k: v - counted.get(k, 0) for k, v in node_counters(node.output()).items()}
        stats = [page.script('return afStats') for page in pages]
        origins = [page.script('return performance.timeOrigin') for page in pages]
        heard = [speaker.onsets() for speaker in speakers]
    # the markers painted, on the wall clock (ms), against the beeps each speaker played (ms)
    speaker_offsets = np.array([o for s, origin, onsets in zip(stats, origins, heard)
                                for o in offsets_ms([origin + m for m in s['markers']], [1000 * t for t in onsets])])
    latencies = np.concatenate([s['latencies'] for s in stats]) if stats else np.zeros(0)
    offsets = np.concatenate([offsets_ms(s['markers'], s['beeps']) for s in stats]) if stats else np.zeros(0)
    fps = [(b['video']['framesDecoded'] - a['video']['framesDecoded'])
           / ((b['video']['timestamp'] - a['video']['timestamp']) / 1000) for a, b in zip(first, last)]
    pct = (lambda v, q: round(float(np.percentile(v, q)), 1) if len(v) else None)
    return {'viewers': viewers, 'node_cpu_cores': round(cpu, 3),
            'fps_decoded_per_viewer': [round(f, 1) for f in fps],
            'media_to_painted_ms_p50': pct(latencies, 50), 'media_to_painted_ms_p95': pct(latencies, 95),
            'media_to_painted_ms_p99': pct(latencies, 99),
            'av_offset_ms_p50': pct(offsets, 50), 'av_offset_ms_p95_abs': pct(np.abs(offsets), 95),
            'av_playout_offset_ms_p50': pct(playout, 50), 'av_playout_offset_ms_p95_abs': pct(np.abs(playout), 95),
            'av_speaker_offset_ms_p50': pct(speaker_offsets, 50),
            'av_speaker_offset_ms_p95_abs': pct(np.abs(speaker_offsets), 95),
            'beeps_heard_per_viewer': [len(onsets) for onsets in heard],
            'frames_measured': int(len(latencies)),
            'node_frames_sent': counted.get('avatar_frames_sent'),
            'node_frames_sent_late': counted.get('avatar_frames_sent_late'),
            'node_packets_dropped_for_slow_viewers': counted.get('avatar_frames_dropped_for_slow_viewers')}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--viewers', default='1,2', help='comma-separated viewer counts (default 1,2)')
    p.add_argument('--seconds', type=float, default=15.0, help='measurement per viewer count (s)')
    p.add_argument('--warm-up', type=float, default=10.0, help='before measuring: A/V sync settles (s)')
    p.add_argument('--presentation-delay-ms', type=float, default=300.0)
    p.add_argument('--speakers', action='store_true',
                   help='also record what each viewer plays (PulseAudio null sinks) against what it paints')
    p.add_argument('--shared-browser', action='store_true',
                   help='open the viewers as windows of one chromium instead of one chromium each')
    args = p.parse_args()
    print(f'command: python bench/bench_web.py --viewers {args.viewers} --seconds {args.seconds:g}'
          f'{" --speakers" if args.speakers else ""}{" --shared-browser" if args.shared_browser else ""}; '
          f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores', flush=True)
    domain = unique_domain_id()
    port = free_port()
    pattern = subprocess.Popen([sys.executable, str(REPO / 'test' / 'web_pattern_publisher.py')],
                               env=ros_env(domain), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    counts = [int(v) for v in args.viewers.split(',')]
    try:
        with contextlib.ExitStack() as stack:
            pulse = (stack.enter_context(PrivatePulseServer([f'viewer{i}' for i in range(max(counts))]))
                     if args.speakers else None)
            node = stack.enter_context(NodeProcess('web_display', ros_env(domain), params={
                'port': port, 'presentation_delay_ms': args.presentation_delay_ms}))
            if not node.wait_for_output('viewer page: https://', 60):
                sys.exit(f'web_display did not start: {node.output()[-2000:]}')
            base, pid = f'https://127.0.0.1:{port}', node.process.pid
            idle = node_cpu(pid, 5.0)
            print(json.dumps({'viewers': 0, 'node_cpu_cores': round(idle, 3)}), flush=True)
            for count in counts:
                result = measure(base, node, pulse, count, args.seconds, args.warm_up, args.shared_browser)
                result['node_cpu_per_viewer_cores'] = round((result['node_cpu_cores'] - idle) / count, 3)
                if result['media_to_painted_ms_p50'] is not None:
                    for q in (50, 95, 99):
                        result[f'added_by_web_ms_p{q}'] = round(result[f'media_to_painted_ms_p{q}']
                                                                - args.presentation_delay_ms, 1)
                print(json.dumps(result), flush=True)
    finally:
        pattern.terminate()
        pattern.wait(10)
    print(f'load average at the end {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
