"""audio_capture: microphone -> AudioChunk on ``user/audio`` (sensor-data QoS).

Captures through PortAudio (sounddevice), mixes to mono, resamples to ``sample_rate`` when the
device cannot open at that rate, and publishes chunks of exactly ``chunk_ms``. Each chunk's
``header.stamp`` is the capture time of its first sample (block_capture_ns): PortAudio's ADC
time of the device block (``inputBufferAdcTime``), mapped to ROS time with an offset measured
against the stream clock at start (clock_offset_ns); when a driver reports no ADC time, the
callback time minus the block duration. Block times are smoothed (StampSmoother) since drivers
jitter by about a block. Stamps are only as good as the driver's times: through PulseAudio's
ALSA plugin the first one or two seconds of a stream are stamped up to ~0.5 s early (the plugin
reports a decaying delay the data do not have), and on a loaded machine its times scatter by
tens of ms (seen through a null sink's monitor on a busy 2-core machine: a sound stamped 30 to
70 ms before paplay started it).

The PortAudio callback only copies the block into a queue and triggers a guard condition; the
executor then drains the queue and publishes at once (no polling timer: no added delay, and no
wake-ups without audio).
"""
from __future__ import annotations

import queue
from dataclasses import dataclass

import numpy as np
import sounddevice
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from avatar_forcing_ros.conversions import array_to_audio_chunk
from avatar_forcing_ros.media.audio_stream import (
    ChunkAssembler, StampSmoother, block_capture_ns, clock_offset_ns)
from avatar_forcing_ros.msg import AudioChunk
from avatar_forcing_ros.nodes.node_support import (
    ConfigError, describe, portaudio_latency, read_config, run_node)


@dataclass(frozen=True)
class AudioCaptureConfig:
    device: str              # input device: '' = default, an index, or a name substring
    sample_rate: int         # published rate (Hz)
    device_sample_rate: int  # rate to open the device at (0 = sample_rate)
    channels: int            # channels opened on the device (mixed down to mono)
    chunk_ms: float          # chunk duration (ms)
    frame_id: str            # header.frame_id ('' = the device name)
    latency: str | float     # PortAudio suggested latency: 'low', 'high' or seconds

    @property
    def chunk_frames(self) -> int:
        return round(self.sample_rate * self.chunk_ms / 1000)

    def __post_init__(self) -> None:
        object.__setattr__(self, 'device', str(self.device))  # an index may arrive as an int

    def validate(self) -> None:
        if self.chunk_frames < 1:
            raise ConfigError("parameters 'sample_rate'/'chunk_ms' give chunks of 0 samples")
        portaudio_latency(self.latency)  # raises on a bad value


def list_input_devices() -> str:
    """One line per PortAudio input device: index, name, channels, default rate."""
    lines = [f'  {d["index"]}: {d["name"]!r} ({d["max_input_channels"]} ch, '
             f'{d["default_samplerate"]:.0f} Hz)'
             for d in sounddevice.query_devices() if d['max_input_channels'] > 0]
    return '\n'.join(lines) or '  (none)'


def find_input_device(spec: str) -> dict:
    """The input device for ``spec`` ('' = default, an index, or a case-insensitive name
    substring). Raises ConfigError listing the available input devices."""
    devices = sounddevice.query_devices()
    if spec.strip() == '':
        index = sounddevice.default.device[0]
        candidates = [devices[index]] if isinstance(index, int) and 0 <= index < len(devices) else []
    elif spec.strip().isdigit():
        index = int(spec)
        candidates = [devices[index]] if index < len(devices) else []
    else:
        candidates = [d for d in devices if spec.lower() in d['name'].lower()]
    candidates = [d for d in candidates if d['max_input_channels'] > 0]
    if not candidates:
        raise ConfigError(f"parameter 'device': no input device matches {spec or '(default)'!r}; "
                          f'available input devices:\n{list_input_devices()}')
    return candidates[0]


class AudioCaptureNode(Node):
    def __init__(self) -> None:
        super().__init__('audio_capture')
        self._declare_parameters()
        self.config = read_config(self, AudioCaptureConfig)
        self.overflows = 0  # device overflows and blocks lost to a full queue
        self._overflows_reported = 0
        self._blocks: queue.Queue = queue.Queue(maxsize=500)
        self._sequence = 0
        self._publisher = self.create_publisher(AudioChunk, 'user/audio', qos_profile_sensor_data)
        self._stream = self._open_stream()
        self._assembler = ChunkAssembler(int(self._stream.samplerate), self.config.sample_rate,
                                         self.config.chunk_frames)
        self._smoother = StampSmoother(self._stream.samplerate)
        self._audio_ready = self.create_guard_condition(self._drain)
        self._stream.start()
        # stream clock -> ROS clock, measured once the stream clock runs
        self._offset_ns = clock_offset_ns(self._now_ns, lambda: self._stream.time)

    def _declare_parameters(self) -> None:
        self.declare_parameter('device', '', describe(  # `-p device:=2` arrives as an integer
            "Input device: '' = the default, an index, or a case-insensitive name substring",
            read_only=True, dynamic_typing=True))
        self.declare_parameter('sample_rate', 16000, describe(
            'Published sample rate (Hz)', int_range=(8000, 192000), read_only=True))
        self.declare_parameter('device_sample_rate', 0, describe(
            'Rate to open the device at (Hz); 0 = sample_rate, falling back to the device '
            'default when it cannot; the audio is resampled to sample_rate',
            int_range=(0, 384000), read_only=True))
        self.declare_parameter('channels', 1, describe(
            'Channels to open on the device; they are averaged to mono', int_range=(1, 64),
            read_only=True))
        self.declare_parameter('chunk_ms', 20.0, describe(
            'Duration of one AudioChunk (ms)', float_range=(1.0, 1000.0), read_only=True))
        self.declare_parameter('frame_id', '', describe(
            'header.frame_id of the chunks; empty = the device name', read_only=True))
        self.declare_parameter('latency', 'low', describe(
            "PortAudio suggested input latency: 'low', 'high' or seconds. 'high' makes ALSA's "
            'pulse plugin buffer ~0.5 s and, at 16 kHz, drop audio while it catches up',
            constraints="'low', 'high' or a number of seconds in (0, 10)", read_only=True,
            dynamic_typing=True))

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _open_stream(self) -> sounddevice.InputStream:
        config = self.config
        device = find_input_device(config.device)
        rate = config.device_sample_rate or config.sample_rate
        try:
            sounddevice.check_input_settings(device['index'], channels=config.channels,
                                             samplerate=rate, dtype='float32')
        except sounddevice.PortAudioError:
            if config.device_sample_rate:
                raise ConfigError(f"parameter 'device_sample_rate': {device['name']!r} cannot "
                                  f'open {config.channels} ch at {rate} Hz') from None
            rate = int(device['default_samplerate'])
        self._device_name = device['name']
        self.get_logger().info(f"capturing {device['name']!r} at {rate} Hz, {config.channels} ch"
                               f' -> {config.sample_rate} Hz mono, {config.chunk_ms:g} ms chunks')
        try:
            return sounddevice.InputStream(
                device=device['index'], samplerate=rate, channels=config.channels,
                dtype='float32', blocksize=round(rate * config.chunk_ms / 1000),
                latency=portaudio_latency(config.latency), callback=self._on_block)
        except sounddevice.PortAudioError as error:
            raise ConfigError(f"parameter 'device': cannot open {device['name']!r}: {error}") from None

    def _on_block(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio callback: copy and enqueue, never block."""
        block = indata.mean(axis=1, dtype=np.float32)  # (frames,), a copy
        try:
            self._blocks.put_nowait((block, time_info.inputBufferAdcTime,
                                     time_info.currentTime, bool(status)))
        except queue.Full:  # the publisher is stalled; the gap shows as a stamp jump
            self.overflows += 1
        self._audio_ready.trigger()   # thread-safe: wakes the executor

    def _drain(self) -> None:
        rate = self._stream.samplerate
        while True:
            try:
                block, adc_time, callback_time, had_status = self._blocks.get_nowait()
            except queue.Empty:
                return
            overflows_before = self.overflows
            if had_status:
                self.overflows += 1
            if self.overflows != self._overflows_reported and self.get_logger().warning(
                    f'{self.overflows} input overflows so far (audio lost)',
                    throttle_duration_sec=1.0):
                self._overflows_reported = self.overflows
            stamp_ns = block_capture_ns(adc_time, callback_time, len(block), rate,
                                        self._offset_ns, self._now_ns)
            stamp_ns = self._smoother.update(stamp_ns, len(block),
                                             after_gap=self.overflows != overflows_before)
            for chunk, chunk_stamp in self._assembler.push(block, stamp_ns):
                self._publisher.publish(array_to_audio_chunk(
                    chunk, self.config.sample_rate, stamp=chunk_stamp, sequence=self._sequence,
                    frame_id=self.config.frame_id or self._device_name))
                self._sequence += 1

    def destroy_node(self) -> None:
        stream = getattr(self, '_stream', None)
        if stream is not None:
            stream.stop()
            stream.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(AudioCaptureNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
