"""One audio input of a node in any of the audio message types it accepts, chosen by parameter.

Types (parameter ``<prefix>msg_type``):

- ``avatar_forcing_ros/AudioChunk`` (default): this package's own chunk.
- ``audio_common_msgs/AudioData`` and ``audio_common_msgs/AudioDataStamped`` (ros-drivers/
  audio_common, apt on Humble, Jazzy, Kilted): raw PCM bytes; rate, channels and sample format
  from ``<prefix>pcm_*`` until an ``AudioInfo`` arrives on ``<prefix>info_topic`` (if set).
  Unstamped AudioData is stamped on arrival (arrival time minus its duration).
- ``audio_common_msgs/AudioStamped`` (mgonzs13/audio_common, used by whisper_ros, llama_ros and
  piper_ros): typed samples with their own format, channels and rate.

The two audio_common projects share the package name, so only one of them can be installed in
a ROS environment; the message module is imported at start-up and a missing one ends the node
with one line naming the parameter. Conversions live in :mod:`avatar_forcing_ros.conversions`.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile

from avatar_forcing_ros.conversions import (PCM_SAMPLE_FORMATS, MalformedMessageError, PcmLayout,
                                            audio_chunk_to_array, audio_stamped_to_array,
                                            pcm_bytes_to_array, pcm_layout_from_audio_info,
                                            stamp_to_seconds)
from avatar_forcing_ros.nodes.node_support import ConfigError, describe

AUDIO_CHUNK = 'avatar_forcing_ros/AudioChunk'
AUDIO_DATA = 'audio_common_msgs/AudioData'
AUDIO_DATA_STAMPED = 'audio_common_msgs/AudioDataStamped'
AUDIO_STAMPED = 'audio_common_msgs/AudioStamped'
AUDIO_MSG_TYPES = (AUDIO_CHUNK, AUDIO_DATA, AUDIO_DATA_STAMPED, AUDIO_STAMPED)
_PROJECT = {AUDIO_DATA: 'ros-drivers/audio_common (apt: ros-$ROS_DISTRO-audio-common-msgs)',
            AUDIO_DATA_STAMPED: 'ros-drivers/audio_common (apt: ros-$ROS_DISTRO-audio-common-msgs)',
            AUDIO_STAMPED: 'mgonzs13/audio_common (built from source with whisper_ros/piper_ros)',
            'hri_msgs': 'ROS4HRI (apt: ros-$ROS_DISTRO-hri-msgs)'}

# on_audio(samples (frames,) float32 mono, sample_rate, stamp of the first sample (s), sequence)
AudioCallback = Callable[[np.ndarray, int, float, int], None]


def declare_audio_input(node: Node, prefix: str, what: str) -> None:
    """Declare the message-type parameters of one audio input (``prefix`` e.g. 'user_audio_')."""
    ro = dict(read_only=True)
    p = node.declare_parameter
    p(f'{prefix}msg_type', AUDIO_CHUNK, describe(
        f'Message type of the {what}: {", ".join(AUDIO_MSG_TYPES)} (the audio_common_msgs types '
        'are imported at start-up: that package must be installed)', constraints='|'.join(AUDIO_MSG_TYPES), **ro))
    p(f'{prefix}info_topic', '', describe(
        f'{what}, AudioData/AudioDataStamped only: AudioInfo topic giving rate, channels and sample '
        "format (audio_capture publishes 'audio_info'); empty = the pcm_* parameters only", **ro))
    p(f'{prefix}pcm_sample_rate', 16000, describe(
        f'{what}, AudioData/AudioDataStamped: sample rate until an AudioInfo says otherwise (Hz)',
        int_range=(1000, 384000), **ro))
    p(f'{prefix}pcm_channels', 1, describe(
        f'{what}, AudioData/AudioDataStamped: interleaved channels until an AudioInfo says otherwise',
        int_range=(1, 64), **ro))
    p(f'{prefix}pcm_sample_format', 'S16LE', describe(
        f'{what}, AudioData/AudioDataStamped: GStreamer sample format until an AudioInfo says otherwise',
        constraints='|'.join(PCM_SAMPLE_FORMATS), **ro))


def import_message(msg_type: str, parameter: str) -> type:
    """'pkg/Type' -> its generated class; ConfigError naming ``parameter`` when it is not installed."""
    package, _, name = msg_type.partition('/')
    try:
        return getattr(importlib.import_module(f'{package}.msg'), name)
    except ImportError:
        source = _PROJECT.get(msg_type, _PROJECT.get(package, package))
        raise ConfigError(f"parameter '{parameter}': {msg_type} is not installed (no Python module "
                          f"{package}.msg; it comes from {source}; source the workspace that has "
                          f"it)") from None
    except AttributeError:
        if package != 'audio_common_msgs':
            raise ConfigError(f"parameter '{parameter}': the installed {package} has no {name} "
                              f"(an older version?)") from None
        other = 'mgonzs13/audio_common' if msg_type != AUDIO_STAMPED else 'ros-drivers/audio_common'
        raise ConfigError(f"parameter '{parameter}': the installed {package} has no {name} (it is "
                          f"the {other} one; choose a type it has or install "
                          f"{_PROJECT[msg_type]})") from None


class AudioInput:
    """Subscribes to ``topic`` with the type ``<prefix>msg_type``; each message becomes one call
    of ``on_audio`` (mono samples); a malformed one calls ``on_error(error)`` instead."""

    def __init__(self, node: Node, prefix: str, topic: str, qos: QoSProfile,
                 on_audio: AudioCallback, on_error: Callable[[Exception], None]) -> None:
        get = lambda name: node.get_parameter(f'{prefix}{name}').value  # noqa: E731
        self.msg_type = get('msg_type')
        if self.msg_type not in AUDIO_MSG_TYPES:
            raise ConfigError(f"parameter '{prefix}msg_type': one of {', '.join(AUDIO_MSG_TYPES)}, "
                              f'got {self.msg_type!r}')
        self._layout = PcmLayout(get('pcm_sample_rate'), get('pcm_channels'), get('pcm_sample_format'))
        try:
            self._layout.check()
        except ValueError as error:
            raise ConfigError(f"parameters '{prefix}pcm_*': {error}") from None
        msg_class = import_message(self.msg_type, f'{prefix}msg_type')
        self._clock = node.get_clock()
        self._on_audio, self._on_error = on_audio, on_error
        self._sequence = 0
        self.topic = topic
        # kept so that an owner that goes away at run time (a generator session) can destroy them
        self.subscriptions = [node.create_subscription(msg_class, topic, self._on_message, qos)]
        info_topic = get('info_topic')
        if info_topic and self.msg_type in (AUDIO_DATA, AUDIO_DATA_STAMPED):
            info_class = import_message('audio_common_msgs/AudioInfo', f'{prefix}info_topic')
            self.subscriptions.append(node.create_subscription(info_class, info_topic, self._on_info, 10))

    def _on_info(self, msg: Any) -> None:
        try:
            self._layout = pcm_layout_from_audio_info(msg)
        except MalformedMessageError as error:
            self._on_error(error)

    def _on_message(self, msg: Any) -> None:
        self._sequence += 1
        try:
            samples, rate, stamp, sequence = self._decode(msg)
            if len(samples):
                self._on_audio(samples, rate, stamp, sequence)
        except (MalformedMessageError, ValueError) as error:   # also a consumer's refusal
            self._on_error(error)

    def _decode(self, msg: Any) -> tuple[np.ndarray, int, float, int]:
        """(mono samples, rate, stamp of the first sample, sequence) of one message."""
        if self.msg_type == AUDIO_CHUNK:
            samples, rate = audio_chunk_to_array(msg, mono=True)
            return samples, rate, stamp_to_seconds(msg.header.stamp), msg.sequence
        if self.msg_type == AUDIO_STAMPED:
            samples, rate = audio_stamped_to_array(msg, mono=True)
        else:
            data = msg.data if self.msg_type == AUDIO_DATA else msg.audio.data
            samples, rate = pcm_bytes_to_array(data, self._layout, mono=True)
        header = getattr(msg, 'header', None)
        stamp = stamp_to_seconds(header.stamp) if header is not None else 0.0
        if stamp == 0.0:   # unstamped: its last sample arrived just now
            stamp = self._clock.now().nanoseconds * 1e-9 - len(samples) / rate
        return samples, rate, stamp, self._sequence
