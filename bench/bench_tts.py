"""How fast does the tts node start speaking, and how fast do its engines synthesise?

For each engine (Piper, espeak-ng): a tts node process on a private ROS domain, warmed up with
one sentence; then ``--repeats`` Say goals of a 12-word sentence, each timed from sending the
goal to the first AudioChunk on avatar/audio (the issue's goal: <= 300 ms). Then the engine alone
(ROS-free, media/speech_engines.py) synthesises the sentence ``--repeats`` times: the real-time
factor is synthesis time / speech duration (< 1: faster than real time).

    source scripts/env.sh && python bench/bench_tts.py [--engines piper espeak] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from avatar_forcing_ros.tools.interrupt import interruptible

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test'))   # ros_testing: node processes from the install space
SENTENCE = 'The quick brown fox jumps over the lazy dog by the river.'  # 12 words


def first_chunk_latencies(engine: str, repeats: int) -> list[float]:
    from rclpy.action import ActionClient
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from avatar_forcing_ros.action import Say
    from avatar_forcing_ros.msg import AudioChunk
    from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id

    domain = unique_domain_id()
    latencies = []
    with Listener(domain) as listener, NodeProcess('tts', ros_env(domain), {'engine': engine}) as node:
        arrivals: list[float] = []
        listener.node.create_subscription(
            AudioChunk, 'avatar/audio', lambda _m: arrivals.append(time.monotonic()),
            QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        client = ActionClient(listener.node, Say, 'avatar/say')
        if not node.wait_for_output('tts ready', 300) or not listener.spin_until(
                lambda: client.server_is_ready() and listener.node.count_publishers('avatar/audio'), 60):
            raise RuntimeError(f'the tts node did not start:\n{node.output()}')
        listener.spin_until(lambda: False, 1.0)
        for i in range(repeats + 1):    # the first goal warms up the path end to end
            arrivals.clear()
            sent = time.monotonic()
            goal = client.send_goal_async(Say.Goal(text=SENTENCE))
            listener.spin_until(goal.done, 60)
            result = goal.result().get_result_async()
            listener.spin_until(result.done, 120)
            if not arrivals:
                raise RuntimeError(f'no audio from the {engine} tts node:\n{node.output()}')
            if i:
                latencies.append(arrivals[0] - sent)
        node.interrupt()
    return latencies


def real_time_factors(engine: str, repeats: int) -> list[float]:
    from avatar_forcing_ros.media.speech_engines import choose_engine

    speech = choose_engine(engine, '', '', 150, sys.executable, print)
    factors = []
    try:
        for i in range(repeats + 1):
            started, seconds = time.monotonic(), 0.0
            for samples, rate in speech.speak(SENTENCE, '', threading.Event()):
                seconds += len(samples) / rate
            if i:   # the first one warms up
                factors.append((time.monotonic() - started) / seconds)
    finally:
        speech.close()
    return factors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--engines', nargs='+', default=['piper', 'espeak'], choices=['piper', 'espeak'])
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    print(f'load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; '
          f'sentence ({len(SENTENCE.split())} words): {SENTENCE!r}')
    for engine in args.engines:
        latencies = np.array(first_chunk_latencies(engine, args.repeats)) * 1000
        factors = np.array(real_time_factors(engine, args.repeats))
        print(f'{engine:6s}: goal -> first chunk median {np.median(latencies):.0f} ms '
              f'(min {latencies.min():.0f}, max {latencies.max():.0f}; goal <= 300 ms: '
              f"{'met' if np.median(latencies) <= 300 else 'NOT met'}); real-time factor median "
              f'{np.median(factors):.3f} (min {factors.min():.3f}, max {factors.max():.3f})')
    print(f'load average after: {os.getloadavg()[0]:.1f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
