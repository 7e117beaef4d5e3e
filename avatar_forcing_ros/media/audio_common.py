"""Samples of the audio_common_msgs audio types as float32 in [-1, 1], ROS-free.

Shared by the nodes (through ``conversions``) and the evaluation (which decodes bags without
message modules). Two projects publish a package called audio_common_msgs:

- ros-drivers/audio_common: ``AudioData.data`` holds raw PCM bytes in a GStreamer sample format
  that an ``AudioInfo`` names (``sample_format``, e.g. S16LE);
- mgonzs13/audio_common: ``AudioInfo.format`` is a PortAudio sample format constant (portaudio.h:
  paFloat32 = 1, paInt32 = 2, paInt16 = 8, paInt8 = 16, paUInt8 = 32) naming the ``AudioData``
  field that holds the samples.

Unsigned 8-bit samples are offset by 128 in both.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# GStreamer sample format -> (wire dtype, full scale)
PCM_SAMPLE_FORMATS: dict[str, tuple[str, float]] = {
    'S8': ('i1', 2.0 ** 7), 'U8': ('u1', 2.0 ** 7),
    'S16LE': ('<i2', 2.0 ** 15), 'S16BE': ('>i2', 2.0 ** 15),
    'S32LE': ('<i4', 2.0 ** 31), 'S32BE': ('>i4', 2.0 ** 31),
    'F32LE': ('<f4', 1.0), 'F32BE': ('>f4', 1.0),
}
# PortAudio sample format -> (AudioData field, dtype, full scale)
PORTAUDIO_FORMATS: dict[int, tuple[str, str, float]] = {
    1: ('float32_data', 'f4', 1.0), 2: ('int32_data', 'i4', 2.0 ** 31),
    8: ('int16_data', 'i2', 2.0 ** 15), 16: ('int8_data', 'i1', 2.0 ** 7),
    32: ('uint8_data', 'u1', 2.0 ** 7),
}


def _scaled(values: np.ndarray, unsigned: bool, scale: float) -> np.ndarray:
    values = values.astype(np.float32)
    if unsigned:
        values -= 128.0
    return values / np.float32(scale)


def pcm_samples(raw: bytes, sample_format: str, channels: int) -> np.ndarray:
    """Interleaved float32 samples of raw PCM bytes (ros-drivers ``AudioData.data``).

    Raises:
        ValueError: an unknown sample format, or a byte count that is not whole frames.
    """
    if sample_format not in PCM_SAMPLE_FORMATS:
        raise ValueError(f'sample_format {sample_format!r} is not supported '
                         f'(supported: {", ".join(PCM_SAMPLE_FORMATS)})')
    wire, scale = PCM_SAMPLE_FORMATS[sample_format]
    frame_bytes = np.dtype(wire).itemsize * max(channels, 1)
    if len(raw) % frame_bytes:
        raise ValueError(f'data has {len(raw)} bytes, not whole frames of {frame_bytes} bytes '
                         f'({channels} x {sample_format})')
    return _scaled(np.frombuffer(raw, dtype=wire), sample_format == 'U8', scale)


def portaudio_samples(audio_data: Any, portaudio_format: int) -> np.ndarray:
    """Interleaved float32 samples of an mgonzs13 ``AudioData`` in ``portaudio_format``.

    Raises:
        ValueError: a format without a field (e.g. paInt24 = 4) or an unknown one.
    """
    if portaudio_format not in PORTAUDIO_FORMATS:
        raise ValueError(f'format {portaudio_format} is not a supported PortAudio sample format '
                         f'(1 float32, 2 int32, 8 int16, 16 int8, 32 uint8)')
    field, dtype, scale = PORTAUDIO_FORMATS[portaudio_format]
    return _scaled(np.asarray(getattr(audio_data, field), dtype=dtype), dtype == 'u1', scale)
