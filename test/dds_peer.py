"""The other process of the DDS tests: publishes deterministic messages of each custom type.

    python test/dds_peer.py KIND COUNT     (KIND: motion | audio | status | image)

Waits (up to 20 s) for a subscriber, publishes message k = 0..COUNT-1 at 50 Hz (images: 25 Hz,
best effort), then lingers a second so reliable deliveries complete. ``make_message(kind, k)``
is imported by the test to know what must arrive.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from avatar_forcing_ros.msg import AudioChunk, GeneratorStatus, MotionLatent

TOPICS = {'motion': 'avatar/motion', 'audio': 'user/audio', 'status': 'avatar/generator_status',
          'image': 'image'}
TYPES = {'motion': MotionLatent, 'audio': AudioChunk, 'status': GeneratorStatus, 'image': Image}


def header(k: int, frame_id: str) -> Header:
    return Header(stamp=Time(sec=1_700_000_000 + k, nanosec=(k * 40_000_123) % 1_000_000_000),
                  frame_id=frame_id)


def make_message(kind: str, k: int):
    """Message number k of ``kind``; every field depends on k (floats exact in float32)."""
    if kind == 'motion':
        latent = (np.arange(512, dtype=np.float32) / 8 + k).tolist()
        return MotionLatent(header=header(k, 'avatar_0'), frame_index=k, block_index=k // 10,
                            latent_space='avatar_forcing/lia_motion', latent=latent,
                            nfe=k % 5 + 1, guidance_branches=3 - k % 3, is_hold=bool(k % 2))
    if kind == 'audio':
        samples = np.sin(np.arange(640, dtype=np.float32) * 0.01 * (k + 1)).astype(np.float32)
        return AudioChunk(header=header(k, 'mic'), sample_rate=16000, channels=2,
                          sequence=k, samples=samples.tolist())
    if kind == 'status':
        return GeneratorStatus(
            header=header(k, ''), backend='portable', latent_space='portable/face_params_v1',
            last_block_compute_s=0.5 + k, mean_block_compute_s=0.25 * k, queue_depth=k % 7,
            latency_budget_ms=400.0, last_latency_ms=k * 1.5, nfe=4, guidance_branches=2,
            frames_published=k, hold_frames=2 * k, late_blocks=3 * k, malformed_inputs=k + 1,
            camera_age_s=-1.0, user_audio_age_s=0.03125 * k, avatar_audio_age_s=0.5,
            camera_stale=True, user_audio_stale=bool(k % 2), avatar_audio_stale=False)
    if kind == 'image':
        msg = Image(header=header(k, 'camera'), height=512, width=512, encoding='rgb8',
                    step=512 * 3)
        msg.data = np.full(512 * 512 * 3, k % 256, np.uint8).tobytes()
        return msg
    raise ValueError(f'unknown kind {kind!r}')


def index_of(kind: str, msg) -> int:
    """k of a received message."""
    return {'motion': lambda m: m.frame_index, 'audio': lambda m: m.sequence,
            'status': lambda m: m.frames_published,
            'image': lambda m: m.header.stamp.sec - 1_700_000_000}[kind](msg)


def qos(kind: str) -> QoSProfile:
    reliability = ReliabilityPolicy.BEST_EFFORT if kind == 'image' else ReliabilityPolicy.RELIABLE
    return QoSProfile(depth=100 if kind != 'image' else 5, reliability=reliability)


def main(kind: str, count: int) -> int:
    rclpy.init()
    node = rclpy.create_node(f'dds_peer_{kind}')
    publisher = node.create_publisher(TYPES[kind], TOPICS[kind], qos(kind))
    deadline = time.monotonic() + 20
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.05)
    time.sleep(0.5)  # the match is seen here before the subscriber's side is ready
    period = 0.04 if kind == 'image' else 0.02
    start = time.monotonic()
    for k in range(count):
        time.sleep(max(0.0, start + k * period - time.monotonic()))
        publisher.publish(make_message(kind, k))
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
