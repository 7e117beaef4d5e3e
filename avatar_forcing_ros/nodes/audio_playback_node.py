"""audio_playback: plays `avatar/audio` on the speaker at the presentation time of its frames.

Each chunk's first sample sounds at header.stamp + presentation_delay_ms (the display's delay),
measured against the wall clock from the output stream's own DAC timing, not a fixed sleep:
late chunks lose their past part (counted), gaps are silence. Output device by index or name
(sounddevice / PortAudio); an unknown device fails at start with the list of output devices.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from avatar_forcing_ros.conversions import MalformedMessageError, audio_chunk_to_array, stamp_to_seconds
from avatar_forcing_ros.msg import AudioChunk
from avatar_forcing_ros.nodes.node_support import (ConfigError, MalformedInputCounter, describe,
                                                   read_config, run_node)
from avatar_forcing_ros.pipeline.audio import resample
from avatar_forcing_ros.pipeline.presentation import PlaybackTimeline


@dataclass(frozen=True)
class AudioPlaybackConfig:
    audio_topic: str = "avatar/audio"
    presentation_delay_ms: float = 1000.0
    device: str = ""
    sample_rate: int = 16000
    latency: str = "low"

    def validate(self) -> None:
        if self.latency not in ("low", "high"):
            raise ConfigError(f"latency must be 'low' or 'high', got {self.latency!r}")


def output_devices() -> list[tuple[int, str]]:
    """(index, name) of every PortAudio device with output channels."""
    import sounddevice as sd
    return [(i, d["name"]) for i, d in enumerate(sd.query_devices()) if d["max_output_channels"] > 0]


def resolve_device(spec: str) -> int | None:
    """'' -> None (system default); digits -> that index; else the first output device whose name
    contains `spec` (case-insensitive). ConfigError listing the devices when nothing matches."""
    if not spec:
        return None
    devices = output_devices()
    for index, name in devices:
        if (spec.isdigit() and int(spec) == index) or (not spec.isdigit() and spec.lower() in name.lower()):
            return index
    listing = "; ".join(f"{i}: {n}" for i, n in devices) or "none"
    raise ConfigError(f"output device {spec!r} not found; output devices: {listing}")


class AudioPlaybackNode(Node):
    def __init__(self) -> None:
        super().__init__("audio_playback")
        self._declare_parameters()
        self.config = c = read_config(self, AudioPlaybackConfig)
        import sounddevice as sd
        device = resolve_device(c.device)
        self._timeline = PlaybackTimeline(c.sample_rate)
        self._malformed = MalformedInputCounter(self)
        self.chunks = 0
        try:
            self._stream = sd.OutputStream(samplerate=c.sample_rate, channels=1, dtype="float32",
                                           device=device, latency=c.latency, callback=self._fill)
            self._stream.start()
        except sd.PortAudioError as error:
            listing = "; ".join(f"{i}: {n}" for i, n in output_devices()) or "none"
            raise ConfigError(f"cannot open output device {c.device or 'default'!r}: {error}; "
                              f"output devices: {listing}") from error
        self.create_subscription(AudioChunk, c.audio_topic, self._on_chunk,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.create_timer(5.0, self._log_counters)
        self.get_logger().info(f"playing {c.audio_topic} on {c.device or 'the default device'} at "
                               f"{c.sample_rate} Hz, presentation delay {c.presentation_delay_ms:g} ms")

    def _declare_parameters(self) -> None:
        ro = dict(read_only=True)
        p = self.declare_parameter
        p("audio_topic", "avatar/audio", describe("AudioChunk topic to play", **ro))
        p("presentation_delay_ms", 1000.0, describe(
            "Play each chunk at header.stamp + this delay (ms); use the display's value",
            float_range=(0.0, 10000.0), **ro))
        p("device", "", describe("Output device: empty = default, an index, or part of its name", **ro))
        p("sample_rate", 16000, describe("Output stream rate (Hz); chunks at other rates are resampled",
                                         int_range=(8000, 192000), **ro))
        p("latency", "low", describe("PortAudio latency class", constraints="low|high", **ro))

    def _on_chunk(self, msg: AudioChunk) -> None:
        try:
            samples, rate = audio_chunk_to_array(msg, mono=True)
        except MalformedMessageError as error:
            self._malformed.record(self.config.audio_topic, error)
            return
        samples = resample(samples, rate, self.config.sample_rate)
        start = stamp_to_seconds(msg.header.stamp) + self.config.presentation_delay_ms / 1e3
        self._timeline.add(samples, start)
        self.chunks += 1

    def _fill(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio callback: the samples due from the moment this buffer reaches the DAC."""
        lead = time_info.outputBufferDacTime - time_info.currentTime
        if not 0.0 <= lead < 1.0:          # some host APIs report no DAC time
            lead = self._stream.latency
        outdata[:, 0] = self._timeline.read(frames, time.time() + lead)

    def _log_counters(self) -> None:
        t = self._timeline
        self.get_logger().info(f"chunks {self.chunks}, played {t.played_samples / t.sample_rate:.2f} s, "
                               f"late {t.late_samples / t.sample_rate:.3f} s, malformed {self._malformed.count}")

    def destroy_node(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.stop()
            stream.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(AudioPlaybackNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
