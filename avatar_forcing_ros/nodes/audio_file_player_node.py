"""audio_file_player: plays a WAV/FLAC file as AudioChunk messages in real time.

The avatar's speech in demos (a stand-in for a TTS engine). Publishes ``avatar/audio``
(AudioChunk, mono, ``sample_rate`` Hz, ``chunk_ms`` per chunk). Each chunk is stamped with the
presentation time of its first sample on a steady timeline, ``t_start + frames_sent / rate``
(never the timer's jittery wake-up time), and published once that time has come: a timer ticks
once per chunk, and a file starts on a tick, so each chunk goes out at its own tick (a looping
file wraps around inside a chunk, keeping chunks whole). Nothing is
published while idle: an absent avatar voice is the "not speaking" condition, not silence.

Start another file while running with either
    avatar-forcing-ctl param set /audio_file_player file /path/to/next.wav   (validated, then applied;
        on a robot with apt ROS: ros2 param set /audio_file_player file /path/to/next.wav)
    or a std_msgs/String with the path on /audio_file_player/play (on a robot with apt ROS:
        ros2 topic pub --once /audio_file_player/play std_msgs/msg/String "{data: /path/next.wav}")
An empty path stops playback. A bad path is refused (parameter) or counted and warned about
(topic); the current playback continues.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from avatar_forcing_ros.conversions import array_to_audio_chunk
from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.media.playback_timeline import PlaybackTimeline
from avatar_forcing_ros.msg import AudioChunk
from avatar_forcing_ros.nodes.node_support import (
    ConfigError, MalformedInputCounter, describe, read_config, run_node)

_NS_PER_S = 1_000_000_000
_TICK_TOLERANCE_S = 0.002   # a tick this early still sends its chunk (ROS vs monotonic clock)


@dataclass(frozen=True)
class AudioFilePlayerConfig:
    file: str           # audio file to play at start ('' = idle until told)
    loop: bool          # restart the file when it ends
    sample_rate: int    # published rate (Hz); the file is resampled to it
    chunk_ms: float     # chunk duration (ms)
    frame_id: str       # header.frame_id ('' = the file name)

    def validate(self) -> None:
        if self.file and not Path(self.file).is_file():
            raise ConfigError(f"parameter 'file': no such file {self.file!r}")
        if round(self.sample_rate * self.chunk_ms / 1000) < 1:
            raise ConfigError("parameters 'sample_rate'/'chunk_ms' give chunks of 0 samples")

    @property
    def chunk_frames(self) -> int:
        return round(self.sample_rate * self.chunk_ms / 1000)


class AudioFilePlayerNode(Node):
    def __init__(self) -> None:
        super().__init__('audio_file_player')
        self._declare_parameters()
        self.config = read_config(self, AudioFilePlayerConfig)
        self._malformed = MalformedInputCounter(self)
        self._loop = self.config.loop
        self._playback: PlaybackTimeline | None = None
        self._playing = ''  # name of the file being played
        self._sequence = 0
        self._validated: dict[str, np.ndarray] = {}  # parameter callback -> post-set callback
        # one tick per chunk; each file starts on a tick, so every chunk is due exactly at a tick
        self._timer = self.create_timer(self.config.chunk_frames / self.config.sample_rate,
                                        self._publish_due_chunks)
        if self.config.file:
            try:
                self._start(self.config.file, load_audio(self.config.file, self.config.sample_rate))
            except ValueError as error:
                raise ConfigError(f"parameter 'file': {error}") from error
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._publisher = self.create_publisher(AudioChunk, 'avatar/audio', qos)
        self.create_subscription(String, '~/play', self._on_play, 10)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    def _declare_parameters(self) -> None:
        self.declare_parameter('file', '', describe(
            'WAV/FLAC file to play; settable at run time (validated, then played from its '
            'start); empty = idle'))
        self.declare_parameter('loop', False, describe('Restart the file when it ends'))
        self.declare_parameter('sample_rate', 16000, describe(
            'Published sample rate (Hz); the file is mixed to mono and resampled to it',
            int_range=(8000, 192000), read_only=True))
        self.declare_parameter('chunk_ms', 20.0, describe(
            'Duration of one AudioChunk (ms)', float_range=(1.0, 1000.0), read_only=True))
        self.declare_parameter('frame_id', '', describe(
            'header.frame_id of the chunks; empty = the file name', read_only=True))

    # ---------------------------------------------------------------- switching files

    def _start(self, path: str, samples: np.ndarray) -> None:
        """Play `samples` from the timer's next tick on (empty `path`: stop)."""
        to_tick_ns = max(0, self._timer.time_until_next_call() or 0)
        self._playing = Path(path).name
        self._playback = None if not path else PlaybackTimeline(
            samples=samples, sample_rate=self.config.sample_rate,
            chunk_frames=self.config.chunk_frames, loop=self._loop,
            start_ns=self.get_clock().now().nanoseconds + to_tick_ns,
            start_mono=time.monotonic() + to_tick_ns / _NS_PER_S)
        self.get_logger().info(f'playing {path} ({len(samples) / self.config.sample_rate:.2f} s)'
                               if path else 'playback stopped')

    def _on_play(self, msg: String) -> None:
        path = msg.data.strip()
        if not path:
            self._start('', np.zeros(0, np.float32))
            return
        try:
            self._start(path, load_audio(path, self.config.sample_rate))
        except ValueError as error:
            self._malformed.record('~/play', error)

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == 'file' and parameter.value:
                try:
                    self._validated[parameter.value] = load_audio(parameter.value,
                                                                  self.config.sample_rate)
                except ValueError as error:
                    return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        for parameter in parameters:
            if parameter.name == 'loop':
                self._loop = parameter.value
                if self._playback is not None:
                    self._playback.loop = parameter.value
            elif parameter.name == 'file':
                samples = self._validated.pop(parameter.value, np.zeros(0, np.float32))
                self._start(parameter.value, samples)
        self._validated.clear()

    # ---------------------------------------------------------------- publishing

    def _publish_due_chunks(self) -> None:
        playback = self._playback
        if playback is None:
            return
        for chunk, stamp in playback.due_chunks(time.monotonic(), _TICK_TOLERANCE_S):
            self._publisher.publish(array_to_audio_chunk(
                chunk, self.config.sample_rate, stamp=stamp, sequence=self._sequence,
                frame_id=self.config.frame_id or self._playing))
            self._sequence += 1
        if playback.finished:
            self._playback = None
            self.get_logger().info(f'finished {self._playing}')


def main(args: list[str] | None = None) -> int:
    return run_node(AudioFilePlayerNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
