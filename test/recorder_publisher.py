"""Test helper (run as a separate process): publishes known messages for the recorder tests.

    python test/recorder_publisher.py COUNT RATE_HZ

Publishes COUNT messages on each of avatar/motion (MotionLatent), avatar/image/compressed
(512x512 JPEG), user/audio (AudioChunk, 20 ms) and avatar/generator_status, with reliable QoS,
after every topic has a subscriber. Message i of every topic is stamped sec=1000+i, nanosec=i.
Prints READY when subscribed, DONE when everything was published, and exits.
"""
from __future__ import annotations

import sys
import time

import cv2
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from avatar_forcing_ros.msg import AudioChunk, GeneratorStatus, MotionLatent


def _messages(i: int, jpeg: bytes) -> dict[str, object]:
    header = Header(stamp=Time(sec=1000 + i, nanosec=i), frame_id='test')
    return {
        'avatar/motion': MotionLatent(header=header, frame_index=i, block_index=i // 10,
                                      latent_space='test', latent=[float(i)] * 11, nfe=10,
                                      guidance_branches=3, is_hold=False),
        'avatar/image/compressed': CompressedImage(header=header, format='jpeg', data=jpeg),
        'user/audio': AudioChunk(header=header, sample_rate=16000, channels=1, sequence=i,
                                 samples=np.full(320, i / 1000, np.float32).tolist()),
        'avatar/generator_status': GeneratorStatus(header=header, backend='test', nfe=10),
    }


def main() -> int:
    count, rate = int(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node('recorder_test_publisher')
    qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    noise = np.random.default_rng(0).integers(0, 255, (512, 512, 3), np.uint8)
    jpeg = cv2.imencode('.jpg', noise, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()
    types = {topic: type(msg) for topic, msg in _messages(0, jpeg).items()}
    pubs = {topic: node.create_publisher(cls, topic, qos) for topic, cls in types.items()}
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        if time.monotonic() > deadline:
            print('NO SUBSCRIBER', flush=True)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    print('READY', flush=True)
    for i in range(count):
        for topic, msg in _messages(i, jpeg).items():
            pubs[topic].publish(msg)
        time.sleep(1.0 / rate)
    time.sleep(1.0)   # let reliable delivery finish before the publishers go away
    print('DONE', flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
