"""A/V test pattern for the web_display tests: `avatar/image` at 25 fps and `avatar/audio` (16 kHz,
20 ms chunks), both stamped on one steady media timeline and published at their media time (as the
renderer and the speech source do). Every second of media time the frame's top-left 1/16 turns
white for 4 frames and a 1 kHz beep sounds for the same 160 ms: the marker's first frame and the
beep's first sample share one media time. The bottom row carries each frame's media time (ms, a
24-bit code of 16-pixel cells) so the page can tell when a frame painted was stamped. Runs until SIGINT/SIGTERM.

    python test/web_pattern_publisher.py [--no-audio] [--camera]   (in the sourced environment)

--no-audio leaves avatar/audio alone (for tests that listen to it); --camera also publishes the
frames, mirrored, as the robot camera's `image`, stamped on another clock (monotonic time since
boot, as some camera drivers stamp), which the operator page must show all the same.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from avatar_forcing_ros.conversions import array_to_audio_chunk, array_to_image
from avatar_forcing_ros.msg import AudioChunk
from sensor_msgs.msg import Image

FPS, RATE, CHUNK = 25, 16000, 320
MARK_FRAMES = 4


BITS, CELL = 24, 16   # the bottom row: media time in ms (mod 2**24) as 24 white/black cells


def frame(n: int, size: int, stamp_ns: int = 0) -> np.ndarray:
    image = np.full((size, size, 3), 60, np.uint8)
    code = (stamp_ns // 1_000_000) % (1 << BITS)
    for bit in range(BITS):         # most significant first, left to right
        image[size - CELL:, bit * CELL:(bit + 1) * CELL] = 255 if code >> (BITS - 1 - bit) & 1 else 0
    bar = (n * 8) % size                       # something that moves, for the encoder,
    image[size // 2:size - CELL, bar:bar + 16] = (200, 120, 40)   # never over the code's cells
    if n % FPS < MARK_FRAMES:
        image[:size // 16 + 2, :size // 16 + 2] = 255
    else:
        image[:size // 16 + 2, :size // 16 + 2] = 0
    return image


def chunk(m: int) -> np.ndarray:
    t = (m * CHUNK + np.arange(CHUNK)) / RATE      # media seconds since t0
    beep = (t % 1.0) < MARK_FRAMES / FPS
    return np.where(beep, 0.8 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)


def main() -> None:
    size = 512
    with_audio, with_camera = '--no-audio' not in sys.argv, '--camera' in sys.argv
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node('web_pattern')
    images = node.create_publisher(Image, 'avatar/image', QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    audio = node.create_publisher(AudioChunk, 'avatar/audio', QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)) \
        if with_audio else None
    camera = node.create_publisher(Image, 'image', QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)) \
        if with_camera else None
    t0 = (time.time_ns() // 1_000_000_000 + 2) * 1_000_000_000    # a whole second: marker n=0
    n = m = 0
    print('pattern publishing', flush=True)
    while not stop.is_set():
        next_video = t0 + n * 1_000_000_000 // FPS
        next_audio = t0 + m * CHUNK * 1_000_000_000 // RATE
        due = min(next_video, next_audio)
        wait = (due - time.time_ns()) / 1e9
        if wait > 0:
            time.sleep(min(wait, 0.05))
            continue
        if next_audio <= next_video:
            if audio is not None:
                audio.publish(array_to_audio_chunk(chunk(m), RATE, stamp=next_audio, sequence=m, frame_id='pattern'))
            m += 1
        else:
            image = frame(n, size, next_video)
            images.publish(array_to_image(image, 'rgb8', stamp=next_video, frame_id='pattern'))
            if camera is not None:
                camera.publish(array_to_image(np.ascontiguousarray(image[:, ::-1]), 'rgb8',
                                              stamp=time.monotonic_ns(), frame_id='camera'))
            n += 1
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    main()
