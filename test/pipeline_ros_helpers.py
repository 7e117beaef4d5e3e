"""Shared pieces of the pipeline's process-level tests: input publishers, parameter setting."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from avatar_forcing_ros.conversions import array_to_audio_chunk, array_to_image
from avatar_forcing_ros.msg import AudioChunk
from fixture_paths import PARITY_TINY

REPO = Path(__file__).resolve().parents[1]


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def face_frame(size: int = 256) -> np.ndarray:
    """A camera frame with a real face in it (scikit-image's public-domain astronaut), RGB uint8."""
    import cv2
    from skimage import data
    return cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)


class LiveInputs:
    """Publishes camera frames and both audio streams in real time from a listener's timer."""

    def __init__(self, node, rate_hz: float = 25.0, audio_rate: int = 16000):
        self.camera = node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.user = node.create_publisher(AudioChunk, "user/audio", qos_profile_sensor_data)
        self.avatar = node.create_publisher(AudioChunk, "avatar/audio", 50)
        self.enabled = {"camera": True, "user": True, "avatar": True}
        self.malformed_left = 0      # ticks that still send one broken message per input
        self._rate, self._seq = audio_rate, 0
        self._chunk = int(audio_rate / rate_hz)
        self._rng = np.random.default_rng(0)
        self._frame = face_frame()
        node.create_timer(1.0 / rate_hz, self._tick)
        self._clock = node.get_clock()

    def _tick(self) -> None:
        now = self._clock.now().nanoseconds
        audio = (0.1 * self._rng.standard_normal(self._chunk)).astype(np.float32)
        if self.enabled["camera"]:
            self.camera.publish(array_to_image(self._frame, "rgb8", now, "camera"))
        if self.enabled["user"]:
            self.user.publish(array_to_audio_chunk(audio, self._rate, now, self._seq, "mic"))
        if self.enabled["avatar"]:
            self.avatar.publish(array_to_audio_chunk(audio, self._rate, now, self._seq, "tts"))
        self._seq += 1
        if self.malformed_left > 0:
            self.malformed_left -= 1
            self._publish_malformed(self._seq)

    def _publish_malformed(self, i: int) -> None:
        """Broken messages on every input: short image data, zero-channel and NaN audio."""
        bad_image = Image(height=10, width=10, encoding="rgb8", step=30)
        bad_image.data = bytes(5)                       # far shorter than height * step
        self.camera.publish(bad_image)
        zero_channels = AudioChunk(sample_rate=16000, channels=0)
        self.user.publish(zero_channels)
        nan_audio = array_to_audio_chunk(np.zeros(4, np.float32), 16000, 1, i)
        nan_audio.samples[0] = float("nan")
        self.avatar.publish(nan_audio)


def set_parameters(listener, node_name: str, **values) -> list:
    """Call <node>/set_parameters; returns the SetParametersResult list."""
    client = listener.node.create_client(SetParameters, f"/{node_name}/set_parameters")
    assert client.wait_for_service(timeout_sec=20), f"{node_name} has no parameter service"
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    future = client.call_async(request)
    assert listener.spin_until(future.done, 20)
    return future.result().results


def received_between(messages: list, start: float, end: float) -> list:
    """(msg, arrival) pairs that arrived in [start, end) (time.monotonic)."""
    return [m for m, t in messages if start <= t < end]


def wait(listener, seconds: float) -> None:
    end = time.monotonic() + seconds
    listener.spin_until(lambda: time.monotonic() >= end, seconds + 1)
