"""Does the recorder node keep up with a live session? (issue: 10 minutes with no loss)

Starts the recorder node and a load publisher as separate processes on a private ROS domain:
25 Hz MotionLatent (11-D) + 25 Hz 512x512 JPEG CompressedImage (the scikit-image astronaut,
about 68 kB) + 50 Hz AudioChunk of 20 ms on user/audio and avatar/audio + 1 Hz status, all
stamped with the publish time, reliable QoS (``--best-effort-images`` for the pipeline's image
QoS). After the publisher ends, the recorder gets SIGINT; the bag is read back and compared
with what was published. Prints per-topic published/recorded counts, receive delay
(log time - stamp) percentiles, the recorder's CPU time and peak memory, and the bag size.

    source scripts/env.sh && python bench/bench_recorder.py --seconds 600
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from avatar_forcing_ros.tools.interrupt import interruptible

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))   # the source tree (the install space provides the messages)
TOPICS = ('avatar/motion', 'avatar/image/compressed', 'user/audio', 'avatar/audio',
          'avatar/generator_status')


def publish(seconds: float, best_effort_images: bool) -> None:
    """Publisher process: the load described in the module docstring; prints counts as JSON."""
    import cv2
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage
    from skimage.data import astronaut
    from std_msgs.msg import Header

    from avatar_forcing_ros.msg import AudioChunk, GeneratorStatus, MotionLatent

    rclpy.init()
    node = rclpy.create_node('bench_load_publisher')
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    image_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT) \
        if best_effort_images else reliable
    types = {'avatar/motion': MotionLatent, 'avatar/image/compressed': CompressedImage,
             'user/audio': AudioChunk, 'avatar/audio': AudioChunk,
             'avatar/generator_status': GeneratorStatus}
    pubs = {t: node.create_publisher(c, t, image_qos if 'image' in t else reliable)
            for t, c in types.items()}
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        rclpy.spin_once(node, timeout_sec=0.05)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 90]
    jpeg = cv2.imencode('.jpg', astronaut()[:, :, ::-1], quality)[1].tobytes()
    samples = (np.random.default_rng(0).normal(size=320) * 0.1).astype(np.float32).tolist()
    counts: Counter = Counter()
    start = time.monotonic()
    for tick in range(int(seconds * 50)):                     # 20 ms ticks
        time.sleep(max(0.0, start + tick * 0.02 - time.monotonic()))
        sec, nsec = divmod(time.time_ns(), 1_000_000_000)
        header = Header(stamp=Time(sec=sec, nanosec=nsec), frame_id='bench')
        out = {'user/audio': AudioChunk(header=header, sample_rate=16000, channels=1,
                                        sequence=tick, samples=samples)}
        out['avatar/audio'] = out['user/audio']
        if tick % 2 == 0:
            out['avatar/motion'] = MotionLatent(header=header, frame_index=tick // 2,
                                                latent_space='bench', latent=[0.1] * 11, nfe=10,
                                                guidance_branches=3)
            out['avatar/image/compressed'] = CompressedImage(header=header, format='jpeg',
                                                             data=jpeg)
        if tick % 50 == 0:
            out['avatar/generator_status'] = GeneratorStatus(header=header, backend='bench')
        for topic, msg in out.items():
            pubs[topic].publish(msg)
            counts[topic] += 1
    time.sleep(1.0)
    print(json.dumps(counts), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def _bag_figures(bag: Path) -> tuple[Counter, dict[str, np.ndarray]]:
    from avatar_forcing_ros.evaluation.bag_io import open_bag
    from avatar_forcing_ros.evaluation.session import header_stamp_ns
    source = open_bag(bag)
    counts: Counter = Counter()
    delays: dict[str, list] = {}
    for raw in source.messages({'/' + t for t in TOPICS}):
        counts[raw.topic.lstrip('/')] += 1
        delay_ms = (raw.log_ns - header_stamp_ns(raw.data)) / 1e6
        delays.setdefault(raw.topic.lstrip('/'), []).append(delay_ms)
    if source.problems:
        print('bag problems:', source.problems)
    return counts, {t: np.asarray(v) for t, v in delays.items()}


def run(seconds: float, best_effort_images: bool) -> None:
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 50),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONPATH=f'{REPO}:' + os.environ.get('PYTHONPATH', ''))
    root = Path(tempfile.mkdtemp(prefix='bench_recorder_'))
    bag = root / 'bag'
    try:
        recorder = subprocess.Popen(
            [sys.executable, '-m', 'avatar_forcing_ros.nodes.recorder_node', '--ros-args',
             '-p', f'output:={bag}', '-p', 'topics:=[' + ','.join(f"'{t}'" for t in TOPICS) + ']',
             '-p', 'discovery_period_s:=0.1'], env=env, cwd=REPO,
            stdout=(root / 'recorder.log').open('w'), stderr=subprocess.STDOUT)
        flags = ['--best-effort-images'] if best_effort_images else []
        publisher = subprocess.run(
            [sys.executable, __file__, '--publish', '--seconds', str(seconds), *flags],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=seconds + 120)
        published = Counter(json.loads(publisher.stdout.strip().splitlines()[-1]))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb = _peak_rss_mb(recorder.pid)
        recorder.send_signal(signal.SIGINT)
        code = recorder.wait(timeout=120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        recorded, delays = _bag_figures(bag)
        size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
        print(f'recorder bench: {seconds:g} s session, exit {code}, bag {size_mb:.0f} MB, '
              f'recorder CPU {cpu_s:.1f} s ({100 * cpu_s / seconds:.0f}% of one core), '
              f'peak RSS {peak_mb:.0f} MB')
        for topic in TOPICS:
            d = delays.get(topic, np.zeros(1))
            print(f'  {topic:26s} published {published[topic]:6d} recorded {recorded[topic]:6d} '
                  f'lost {published[topic] - recorded[topic]:4d}  receive delay p50 '
                  f'{np.percentile(d, 50):.2f} ms p99 {np.percentile(d, 99):.2f} ms '
                  f'max {d.max():.1f} ms')
        print('  recorder summary:', [line.split(']: ')[-1] for line in
                                      (root / 'recorder.log').read_text().splitlines()
                                      if 'bag closed' in line])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=60.0,
                        help='session length (s); 600 = the issue figure')
    parser.add_argument('--best-effort-images', action='store_true')
    parser.add_argument('--publish', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        publish(args.seconds, args.best_effort_images)
    else:
        run(args.seconds, args.best_effort_images)


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
