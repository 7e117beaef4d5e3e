"""The other process of the interop tests: publishes other projects' message types in real time.

    python test/interop_publisher.py MODE SECONDS

Runs with a test-built workspace on its paths (the message packages cannot all be imported in one
process: two of them are both called audio_common_msgs). Modes:

- ``ros_drivers``: AudioData on ``audio`` (2 channels, S16LE, 22.05 kHz, described by AudioInfo on
  ``audio_info`` once a second, as audio_capture does) and AudioDataStamped on ``avatar/audio``
  (1 channel, S16LE, 16 kHz: the listeners' pcm_* defaults).
- ``mgonzs13``: AudioStamped on ``audio`` (int16, as their audio_capturer) and on ``avatar/audio``
  (float32, as their tts node and piper_ros).
- ``hri``: ROS4HRI: /humans/faces/tracked ['f1'] and /humans/faces/f1/cropped (a real face),
  /humans/voices/tracked ['v1'] and /humans/voices/v1/is_speaking, AudioChunk speech on ``audio``
  and ``avatar/audio``; listens to hri_msgs/Expression on ``avatar/expression`` and prints one
  JSON line {"expressions": [...]} at the end.

Speech stand-in: a 220 Hz tone whose loudness swells and fades three times a second (syllables).
Waits (up to 30 s) for a subscriber on ``avatar/audio`` before it starts.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from avatar_forcing_ros.conversions import (PcmLayout, array_to_audio_chunk, array_to_audio_stamped,
                                            array_to_image, array_to_pcm_bytes, make_header)

CHUNK_S = 0.04


def speech(rate: int, start: int, frames: int, channels: int = 1) -> np.ndarray:
    """Frames start..start+frames of the syllable-like test signal, (frames, channels)."""
    t = (start + np.arange(frames)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 220 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    return np.repeat(mono[:, None], channels, axis=1)


class Publisher:
    def __init__(self, mode: str) -> None:
        self.node = rclpy.create_node(f'interop_publisher_{mode}')
        self.mode = mode
        self.expressions: list[dict] = []
        getattr(self, f'_setup_{mode}')()

    def _pub(self, msg_type, topic, reliable=True):
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE if reliable else
                         ReliabilityPolicy.BEST_EFFORT)
        return self.node.create_publisher(msg_type, topic, qos)

    # ---- ros-drivers/audio_common ----------------------------------------------------------
    def _setup_ros_drivers(self) -> None:
        from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
        self.types = AudioData, AudioDataStamped, AudioInfo
        self.user, self.avatar = self._pub(AudioData, 'audio'), self._pub(AudioDataStamped, 'avatar/audio')
        self.info = self._pub(AudioInfo, 'audio_info')
        self.user_layout = PcmLayout(22050, 2, 'S16LE')
        self.avatar_layout = PcmLayout(16000, 1, 'S16LE')

    def _tick_ros_drivers(self, k: int, now_s: float) -> None:
        AudioData, AudioDataStamped, AudioInfo = self.types
        if k % 25 == 0:
            u = self.user_layout
            self.info.publish(AudioInfo(channels=u.channels, sample_rate=u.sample_rate,
                                        sample_format=u.sample_format, bitrate=0, coding_format='wave'))
        for layout, pub, stamped in ((self.user_layout, self.user, False), (self.avatar_layout, self.avatar, True)):
            n = int(layout.sample_rate * CHUNK_S)
            data = array_to_pcm_bytes(speech(layout.sample_rate, k * n, n, layout.channels), layout)
            audio = AudioData(data=data)
            pub.publish(AudioDataStamped(header=make_header(now_s), audio=audio) if stamped else audio)

    # ---- mgonzs13/audio_common -------------------------------------------------------------
    def _setup_mgonzs13(self) -> None:
        from audio_common_msgs.msg import AudioStamped
        self.user, self.avatar = self._pub(AudioStamped, 'audio'), self._pub(AudioStamped, 'avatar/audio')

    def _tick_mgonzs13(self, k: int, now_s: float) -> None:
        n = int(16000 * CHUNK_S)
        samples = speech(16000, k * n, n)
        self.user.publish(array_to_audio_stamped(samples, 16000, now_s, 'mic', portaudio_format=8))
        self.avatar.publish(array_to_audio_stamped(samples, 16000, now_s, 'tts', portaudio_format=1))

    # ---- ROS4HRI ---------------------------------------------------------------------------
    def _setup_hri(self) -> None:
        from hri_msgs.msg import Expression, IdsList
        from sensor_msgs.msg import Image
        from std_msgs.msg import Bool
        sys.path.insert(0, str(__import__('pathlib').Path(__file__).parent))
        from pipeline_ros_helpers import face_frame
        from avatar_forcing_ros.msg import AudioChunk
        self.types = IdsList, Bool
        self.faces = self._pub(IdsList, '/humans/faces/tracked')
        self.face = self.node.create_publisher(Image, '/humans/faces/f1/cropped', qos_profile_sensor_data)
        self.voices = self._pub(IdsList, '/humans/voices/tracked')
        self.speaking = self._pub(Bool, '/humans/voices/v1/is_speaking')
        self.user, self.avatar = self._pub(AudioChunk, 'audio'), self._pub(AudioChunk, 'avatar/audio')
        frame = face_frame(512)
        self.crop = np.ascontiguousarray(frame[60:190, 170:280])   # the face region, as hri_face_detect crops it
        self.node.create_subscription(Expression, 'avatar/expression', self._on_expression, 10)

    def _on_expression(self, msg) -> None:
        self.expressions.append({'expression': msg.expression, 'valence': msg.valence,
                                 'arousal': msg.arousal, 'confidence': msg.confidence})

    def _tick_hri(self, k: int, now_s: float) -> None:
        IdsList, Bool = self.types
        header = make_header(now_s)
        self.faces.publish(IdsList(header=header, ids=['f1']))
        self.voices.publish(IdsList(header=header, ids=['v1']))
        self.speaking.publish(Bool(data=(k // 25) % 2 == 0))
        self.face.publish(array_to_image(self.crop, 'bgr8', now_s, 'camera'))
        n = int(16000 * CHUNK_S)
        samples = speech(16000, k * n, n)[:, 0].astype(np.float32)
        self.user.publish(array_to_audio_chunk(samples, 16000, now_s, k, 'mic'))
        self.avatar.publish(array_to_audio_chunk(samples, 16000, now_s, k, 'tts'))

    def run(self, seconds: float) -> int:
        deadline = time.monotonic() + 30
        while self.avatar.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                print('no subscriber on avatar/audio', flush=True)
                return 3
            rclpy.spin_once(self.node, timeout_sec=0.05)
        tick = getattr(self, f'_tick_{self.mode}')
        start = time.monotonic()
        for k in range(int(seconds / CHUNK_S)):
            while time.monotonic() < start + k * CHUNK_S:
                rclpy.spin_once(self.node, timeout_sec=0.005)
            tick(k, self.node.get_clock().now().nanoseconds * 1e-9)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
        print(json.dumps({'expressions': self.expressions}), flush=True)
        return 0


def main(mode: str, seconds: float) -> int:
    rclpy.init()
    try:
        return Publisher(mode).run(seconds)
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
