"""audio_playback: plays `avatar/audio` on the speaker at the presentation time of its frames.

Each chunk's first sample sounds at header.stamp + presentation_delay_ms (the display's delay),
measured against the wall clock from the output stream's own DAC timing, not a fixed sleep:
late chunks lose their past part (counted), gaps are silence. Chunks at another rate than the
output's are resampled as one continuous stream (ChunkResampler: no click at chunk boundaries).
The sound is read continuously and re-synced to the DAC timing only beyond 10 ms
(PlaybackTimeline; counted, like the device's underflows). Output device by index or name
(sounddevice / PortAudio); an unknown device fails at start with the list of output devices.
Besides AudioChunk it plays the audio_common_msgs types (audio_msg_type; see nodes/audio_input.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from avatar_forcing_ros.media.audio_stream import clock_offset_ns
from avatar_forcing_ros.nodes.audio_input import AudioInput, declare_audio_input
from avatar_forcing_ros.nodes.node_support import (ConfigError, MalformedInputCounter,
                                                   declare_presentation_delay, describe, portaudio_latency,
                                                   read_config, run_node)
from avatar_forcing_ros.pipeline.audio import ChunkResampler
from avatar_forcing_ros.pipeline.presentation import DEFAULT_PRESENTATION_DELAY_MS, PlaybackTimeline


@dataclass(frozen=True)
class AudioPlaybackConfig:
    audio_topic: str = "avatar/audio"
    presentation_delay_ms: float = DEFAULT_PRESENTATION_DELAY_MS
    device: str = ""
    sample_rate: int = 16000
    latency: str | float = "0.05"

    def validate(self) -> None:
        latency = portaudio_latency(self.latency)
        if isinstance(latency, float) and latency * 1000 >= self.presentation_delay_ms:
            raise ConfigError(f"parameter 'latency': {latency:g} s of output buffer leaves no time "
                              f"within presentation_delay_ms ({self.presentation_delay_ms:g}); "
                              "chunks would all arrive late")


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
        self._resampler = ChunkResampler(c.sample_rate)
        self._malformed = MalformedInputCounter(self)
        self.chunks = 0
        self.underflows = 0       # output buffers the device ran dry before (an audible gap)
        self._underflows_reported = 0
        self._early_reported = 0
        self._stream_to_wall_s: float | None = None  # measured once the stream clock runs
        try:
            self._stream = sd.OutputStream(samplerate=c.sample_rate, channels=1, dtype="float32",
                                           device=device, latency=portaudio_latency(c.latency),
                                           callback=self._fill)
            self._stream.start()
            self._stream_to_wall_s = clock_offset_ns(time.time_ns, lambda: self._stream.time) / 1e9
        except sd.PortAudioError as error:
            listing = "; ".join(f"{i}: {n}" for i, n in output_devices()) or "none"
            raise ConfigError(f"cannot open output device {c.device or 'default'!r}: {error}; "
                              f"output devices: {listing}") from error
        AudioInput(self, "audio_", c.audio_topic, QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT),
                   self._on_chunk, lambda error: self._malformed.record(c.audio_topic, error))
        self.create_timer(5.0, self._log_counters)
        self.get_logger().info(f"playing {c.audio_topic} on {c.device or 'the default device'} at "
                               f"{c.sample_rate} Hz, presentation delay {c.presentation_delay_ms:g} ms")

    def _declare_parameters(self) -> None:
        ro = dict(read_only=True)
        p = self.declare_parameter
        p("audio_topic", "avatar/audio", describe("Audio topic to play (its type: audio_msg_type)", **ro))
        declare_audio_input(self, "audio_", "audio to play")
        declare_presentation_delay(self)
        p("device", "", describe("Output device: empty = default, an index, or part of its name", **ro))
        p("sample_rate", 16000, describe("Output stream rate (Hz); chunks at other rates are resampled",
                                         int_range=(8000, 192000), **ro))
        p("latency", "0.05", describe(
            "PortAudio output latency: 'low', 'high' or seconds. The DAC timing compensates it (it "
            "must stay below presentation_delay_ms). 'low' through PulseAudio's ALSA plugin means "
            "~9 ms of buffer refilled every 2 ms by a Python callback that competes for the GIL "
            "with the node: it runs dry under load", constraints="'low', 'high' or a number of "
            "seconds in (0, 10)", dynamic_typing=True, **ro))

    def _on_chunk(self, samples: np.ndarray, rate: int, stamp: float, sequence: int) -> None:
        start = stamp + self.config.presentation_delay_ms / 1e3
        self._timeline.add(*self._resampler.add(samples, rate, start, sequence))
        self.chunks += 1

    def _fill(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio callback: the samples due from the moment this buffer reaches the DAC. The
        driver's times are on the stream clock, taken before this thread got the GIL; reading
        the wall clock here instead would add that wait (up to ~10 ms seen under load)."""
        offset = self._stream_to_wall_s
        if offset is not None and time_info.outputBufferDacTime > 0:
            dac_time = offset + time_info.outputBufferDacTime
        elif offset is not None and time_info.currentTime > 0:  # a host API without DAC times
            dac_time = offset + time_info.currentTime + self._stream.latency
        else:
            dac_time = time.time() + self._stream.latency
        outdata[:, 0] = self._timeline.read(frames, dac_time)
        if status.output_underflow:
            self.underflows += 1

    def _log_counters(self) -> None:
        t = self._timeline
        self.get_logger().info(f"chunks {self.chunks}, played {t.played_samples / t.sample_rate:.2f} s, "
                               f"late {t.late_samples / t.sample_rate:.3f} s, too early "
                               f"{t.early_samples / t.sample_rate:.3f} s, output underflows "
                               f"{self.underflows}, resyncs {t.resyncs} (skipped "
                               f"{t.skipped_samples / t.sample_rate:.3f} s), malformed {self._malformed.count}")
        if self.underflows != self._underflows_reported:
            self._underflows_reported = self.underflows
            self.get_logger().warning(f"{self.underflows} output underflows so far: the device ran "
                                      "dry (audible gaps); a larger 'latency' gives it more buffer")
        if t.early_samples != self._early_reported:
            self._early_reported = t.early_samples
            self.get_logger().warning(f"{t.early_samples / t.sample_rate:.3f} s of audio dropped so far: "
                                      f"stamped more than {t.max_seconds:g} s ahead of the playback "
                                      "clock (is the publisher's clock the same as this machine's?)")

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
