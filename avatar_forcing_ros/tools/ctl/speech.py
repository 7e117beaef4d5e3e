"""``avatar-forcing-ctl say TEXT`` and ``play FILE``: the avatar's speech as real-time AudioChunk
messages on ``avatar/audio``.

The tool publishes the chunks itself, on the audio_file_player's timeline
(media/playback_timeline.py: each chunk stamped with the presentation time of its first sample
on a steady timeline and sent when that time comes) rather than handing a file to a running
audio_file_player: the stamps are then correct whether or not a player runs, the file or the
synthesised speech need not exist on the player's machine, and the command knows when the
speech has been delivered (a ``~/play`` message gives no answer). espeak-ng synthesises the text
in a separate process (media/speech_synthesis.py).
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy

from avatar_forcing_ros.conversions import array_to_audio_chunk
from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.media.playback_timeline import PlaybackTimeline
from avatar_forcing_ros.media.speech_synthesis import espeak_to_wav
from avatar_forcing_ros.msg import AudioChunk
from avatar_forcing_ros.tools.ctl.ros_session import CtlError, Session

_DELIVERY_TIMEOUT_S = 5.0  # after the last chunk, for the subscribers' acknowledgements


@dataclass(frozen=True)
class StreamOptions:
    topic: str           # AudioChunk topic (relative names resolve in the session's namespace)
    sample_rate: int     # published rate (Hz)
    chunk_ms: float      # chunk duration (ms)
    wait_s: float        # how long to wait for a subscriber before giving up (s)

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.chunk_frames < 1:
            raise CtlError(f'--sample-rate {self.sample_rate} and --chunk-ms {self.chunk_ms:g} '
                           'give chunks of no samples')

    @property
    def chunk_frames(self) -> int:
        return round(self.sample_rate * self.chunk_ms / 1000)


def synthesize(text: str, voice: str, words_per_minute: int, sample_rate: int) -> np.ndarray:
    """``text`` spoken by espeak-ng, mono float32 at ``sample_rate``."""
    with tempfile.TemporaryDirectory(prefix='avatar_forcing_ctl_') as folder:
        wav = Path(folder) / 'say.wav'
        try:
            espeak_to_wav(text, wav, voice, words_per_minute)
            return load_audio(wav, sample_rate)
        except (ValueError, RuntimeError) as error:
            raise CtlError(str(error)) from error


def stream(session: Session, samples: np.ndarray, frame_id: str, options: StreamOptions) -> int:
    """Publish ``samples`` in real time as AudioChunks; returns the number of chunks sent."""
    publisher = session.node.create_publisher(
        AudioChunk, options.topic, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    topic = publisher.topic_name
    if not session.spin_until(lambda: publisher.get_subscription_count() > 0, options.wait_s):
        raise CtlError(f'no subscriber on {topic} within {options.wait_s:g} s '
                       '(is the generator running, in this ROS_DOMAIN_ID and namespace?)')
    others = sorted(f"{i.node_namespace.rstrip('/')}/{i.node_name}"
                    for i in session.node.get_publishers_info_by_topic(topic)
                    if i.node_name != session.node.get_name())
    if others:
        print(f"note: {', '.join(others)} also publish(es) on {topic}; the streams interleave",
              file=sys.stderr)
    timeline = PlaybackTimeline(samples=samples, sample_rate=options.sample_rate,
                                chunk_frames=options.chunk_frames,
                                start_ns=session.node.get_clock().now().nanoseconds,
                                start_mono=time.monotonic())
    sequence = 0
    while not timeline.finished:
        session.sleep_until(timeline.next_due_mono())
        for chunk, stamp in timeline.due_chunks(time.monotonic()):
            publisher.publish(array_to_audio_chunk(chunk, options.sample_rate, stamp=stamp,
                                                   sequence=sequence, frame_id=frame_id))
            sequence += 1
    if not publisher.wait_for_all_acked(Duration(seconds=_DELIVERY_TIMEOUT_S)):
        raise CtlError(f'{topic}: not every subscriber acknowledged the audio within '
                       f'{_DELIVERY_TIMEOUT_S:g} s')
    return sequence


def say(session: Session, text: str, voice: str, words_per_minute: int,
        options: StreamOptions) -> int:
    samples = synthesize(text, voice, words_per_minute, options.sample_rate)
    chunks = stream(session, samples, 'say', options)
    print(f'said {text!r}: {len(samples) / options.sample_rate:.2f} s in {chunks} chunks')
    return 0


def play(session: Session, file: str, options: StreamOptions) -> int:
    try:
        samples = load_audio(file, options.sample_rate)
    except ValueError as error:
        raise CtlError(str(error)) from error
    chunks = stream(session, samples, Path(file).name, options)
    print(f'played {file}: {len(samples) / options.sample_rate:.2f} s in {chunks} chunks')
    return 0
