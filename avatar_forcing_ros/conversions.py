"""Conversions between ROS messages and NumPy arrays: the one place where this happens.

Images (``sensor_msgs/Image``)
    :func:`image_to_array` / :func:`array_to_image` for rgb8, bgr8, rgba8, bgra8, mono8, mono16
    and yuv422_yuy2 (the usual USB-camera format; converted to RGB on read). Row padding
    (``step`` > ``width * bytes_per_pixel``, e.g. odd widths aligned to 4 bytes) and
    ``is_bigendian`` (mono16) are honoured. Arrays are ``(H, W)`` for mono encodings and
    ``(H, W, C)`` otherwise, uint8 (uint16 for mono16, native byte order).
Compressed images (``sensor_msgs/CompressedImage``)
    :func:`compressed_to_array` / :func:`array_to_compressed`, jpeg and png, with the format
    string written as ROS's ``compressed_image_transport`` writes it
    (``"rgb8; jpeg compressed bgr8"``).
Audio (``avatar_forcing_ros/AudioChunk``)
    :func:`audio_chunk_to_array` / :func:`array_to_audio_chunk`: float32 samples in [-1, 1],
    shape ``(frames, channels)``; int16 input is accepted and scaled by 1/32768. Sample rates
    outside :data:`SAMPLE_RATE_RANGE` are refused.
Audio of other ROS projects (``audio_common_msgs``: two projects share that package name)
    ros-drivers/audio_common: ``AudioData`` (``uint8[] data``: raw PCM whose layout an
    ``AudioInfo`` describes) and ``AudioDataStamped`` (header + AudioData):
    :func:`pcm_layout_from_audio_info`, :func:`pcm_bytes_to_array`, :func:`array_to_pcm_bytes`.
    mgonzs13/audio_common (whisper_ros, llama_ros, piper_ros): ``AudioStamped`` (header +
    Audio{audio_data: one typed array per PortAudio sample format, info{format, channels, rate,
    chunk}}): :func:`audio_stamped_to_array`, :func:`array_to_audio_stamped`. These message
    modules are imported only when called (they are not installed everywhere).
Time (``builtin_interfaces/Time``)
    :func:`stamp_to_seconds`, :func:`stamp_to_nanoseconds`, :func:`seconds_to_stamp`,
    :func:`nanoseconds_to_stamp`.

A malformed message raises :class:`MalformedMessageError` (a ``ValueError``) whose message names
the offending field, so nodes can count and drop it. Where ROS 2's ``cv_bridge`` is importable
(a robot with ROS installed) it does the raw byte <-> array step; elsewhere NumPy does, with
identical results (validation and colour conversion are shared by both paths).

This module imports message types only, never rclpy's node machinery.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from avatar_forcing_ros.media.audio_chunk import (SAMPLE_RATE_RANGE, BadAudioChunk,
                                                  interleaved_frames)
from avatar_forcing_ros.media.audio_common import (PCM_SAMPLE_FORMATS, PORTAUDIO_FORMATS,
                                                   pcm_samples, portaudio_samples)
from avatar_forcing_ros.msg import AudioChunk

_NS_PER_S = 1_000_000_000



class MalformedMessageError(ValueError):
    """A message whose fields are inconsistent or unsupported; the text names the field."""


# encoding -> (channels, dtype) of the raw layout in ``data``
ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    'rgb8': (3, np.dtype(np.uint8)),
    'bgr8': (3, np.dtype(np.uint8)),
    'rgba8': (4, np.dtype(np.uint8)),
    'bgra8': (4, np.dtype(np.uint8)),
    'mono8': (1, np.dtype(np.uint8)),
    'mono16': (1, np.dtype(np.uint16)),
    'yuv422_yuy2': (2, np.dtype(np.uint8)),  # Y0 U Y1 V: 2 bytes per pixel
}

# Colour conversions from a decoded layout to rgb8 / bgr8 (None = already there).
_TO_RGB = {'rgb8': None, 'bgr8': cv2.COLOR_BGR2RGB, 'rgba8': cv2.COLOR_RGBA2RGB,
           'bgra8': cv2.COLOR_BGRA2RGB, 'mono8': cv2.COLOR_GRAY2RGB}
_TO_BGR = {'rgb8': cv2.COLOR_RGB2BGR, 'bgr8': None, 'rgba8': cv2.COLOR_RGBA2BGR,
           'bgra8': cv2.COLOR_BGRA2BGR, 'mono8': cv2.COLOR_GRAY2BGR}


# --------------------------------------------------------------------------------------------
# time


def stamp_to_nanoseconds(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds since the epoch of its clock."""
    return stamp.sec * _NS_PER_S + stamp.nanosec


def stamp_to_seconds(stamp: Time) -> float:
    """``builtin_interfaces/Time`` -> float seconds (ns precision is lost past ~104 days)."""
    return stamp.sec + stamp.nanosec * 1e-9


def nanoseconds_to_stamp(nanoseconds: int) -> Time:
    """Integer nanoseconds -> ``builtin_interfaces/Time`` (non-negative)."""
    nanoseconds = int(nanoseconds)
    if nanoseconds < 0:
        raise ValueError(f'stamp must be non-negative, got {nanoseconds} ns')
    sec, nanosec = divmod(nanoseconds, _NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def seconds_to_stamp(seconds: float) -> Time:
    """Float seconds -> ``builtin_interfaces/Time``, rounded to the nearest nanosecond."""
    if not np.isfinite(seconds):
        raise ValueError(f'stamp must be finite, got {seconds}')
    return nanoseconds_to_stamp(round(seconds * _NS_PER_S))


def make_header(stamp: Time | float | int | None = None, frame_id: str = '') -> Header:
    """A Header from a Time message, float seconds, or int nanoseconds (None = zero time)."""
    if stamp is None:
        stamp = Time()
    elif isinstance(stamp, float):
        stamp = seconds_to_stamp(stamp)
    elif isinstance(stamp, (int, np.integer)):
        stamp = nanoseconds_to_stamp(int(stamp))
    return Header(stamp=stamp, frame_id=frame_id)


# --------------------------------------------------------------------------------------------
# sensor_msgs/Image


@lru_cache(maxsize=1)
def _cv_bridge() -> Any | None:
    """ROS 2's CvBridge when installed (robots), else None (PyPI-wheel machines)."""
    try:
        from cv_bridge import CvBridge  # noqa: PLC0415 (optional, only on a ROS install)
    except ImportError:
        return None
    return CvBridge()


def _check_image(msg: Image) -> tuple[int, np.dtype]:
    """Validate the geometry of ``msg``; return (channels, dtype) of its raw layout."""
    if msg.encoding not in ENCODINGS:
        raise MalformedMessageError(
            f'Image.encoding {msg.encoding!r} is not supported (supported: {sorted(ENCODINGS)})')
    channels, dtype = ENCODINGS[msg.encoding]
    if msg.width == 0 or msg.height == 0:
        raise MalformedMessageError(f'Image.width/height is zero ({msg.width}x{msg.height})')
    if msg.encoding == 'yuv422_yuy2' and msg.width % 2:
        raise MalformedMessageError(f'Image.width must be even for yuv422_yuy2, got {msg.width}')
    row_bytes = msg.width * channels * dtype.itemsize
    if msg.step < row_bytes:
        raise MalformedMessageError(
            f'Image.step {msg.step} < width*bytes_per_pixel = {row_bytes} ({msg.encoding})')
    if len(msg.data) < msg.height * msg.step:
        raise MalformedMessageError(
            f'Image.data has {len(msg.data)} bytes, fewer than height*step = {msg.height * msg.step}')
    return channels, dtype


def _decode_raw_numpy(msg: Image, channels: int, dtype: np.dtype) -> np.ndarray:
    """Raw layout of ``msg.data`` as (H, W, C), native byte order, padding dropped."""
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=msg.height * msg.step)
    rows = rows.reshape(msg.height, msg.step)[:, :msg.width * channels * dtype.itemsize]
    wire = dtype.newbyteorder('>' if msg.is_bigendian else '<')
    pixels = rows.copy().view(wire).reshape(msg.height, msg.width, channels)  # own memory
    return pixels.astype(dtype, copy=False)


def _decode_raw(msg: Image, channels: int, dtype: np.dtype) -> np.ndarray:
    bridge = _cv_bridge()
    if bridge is None:
        return _decode_raw_numpy(msg, channels, dtype)
    raw = np.array(bridge.imgmsg_to_cv2(msg, desired_encoding='passthrough'), dtype=dtype)  # copy
    return raw.reshape(msg.height, msg.width, channels)


def _convert_colour(pixels: np.ndarray, encoding: str, want: str | None) -> np.ndarray:
    """(H, W, C) decoded pixels in ``encoding`` -> array in ``want`` (None = as decoded)."""
    if encoding == 'yuv422_yuy2':
        pixels, encoding = cv2.cvtColor(pixels, cv2.COLOR_YUV2RGB_YUY2), 'rgb8'
    if encoding == 'mono16' and want is not None:
        pixels, encoding = (pixels >> 8).astype(np.uint8), 'mono8'
    if want is None or want == encoding:
        return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    table = {'rgb8': _TO_RGB, 'bgr8': _TO_BGR}.get(want)
    if table is None:
        raise ValueError(f"want must be 'rgb8', 'bgr8' or None, got {want!r}")
    code = table[encoding]
    return pixels if code is None else cv2.cvtColor(pixels, code)


def image_to_array(msg: Image, want: str | None = 'rgb8') -> np.ndarray:
    """Decode a ``sensor_msgs/Image``.

    Args:
        msg: the image; any encoding in :data:`ENCODINGS`.
        want: 'rgb8' or 'bgr8' -> (H, W, 3) uint8 in that channel order (alpha dropped, mono
            replicated, mono16 reduced to its high byte); None -> the message's own layout:
            (H, W) for mono8/mono16, (H, W, C) otherwise, except yuv422_yuy2 which is
            always returned as RGB (H, W, 3).

    Returns:
        A new C-contiguous array (never a view of ``msg.data``).

    Raises:
        MalformedMessageError: unknown encoding, zero size, odd width (yuy2), step smaller than
            a row, or data shorter than height*step.
    """
    channels, dtype = _check_image(msg)
    pixels = _decode_raw(msg, channels, dtype)
    return np.ascontiguousarray(_convert_colour(pixels, msg.encoding, want))


def _encode_raw(arr: np.ndarray, encoding: str) -> np.ndarray:
    """Array in ``encoding``'s layout (yuy2: RGB input is converted) -> (H, W, C) raw pixels."""
    channels, dtype = ENCODINGS[encoding]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    rgb_to_yuy2 = encoding == 'yuv422_yuy2' and arr.ndim == 3 and arr.shape[2] == 3
    if arr.ndim != 3 or arr.shape[2] != (3 if rgb_to_yuy2 else channels) or arr.dtype != dtype:
        shape = {1: '(H, W)', 2: '(H, W, 2) or RGB (H, W, 3)'}.get(channels, f'(H, W, {channels})')
        raise ValueError(f'{encoding} needs an array of shape {shape} and dtype {dtype}, '
                         f'got {arr.shape} {arr.dtype}')
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f'image must not be empty, got shape {arr.shape}')
    if encoding == 'yuv422_yuy2' and arr.shape[1] % 2:  # a U/V pair spans two pixels
        raise ValueError(f'yuv422_yuy2 needs an even width, got {arr.shape[1]}')
    if rgb_to_yuy2:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2YUV_YUY2)
    return np.ascontiguousarray(arr)


def _byte_array(arr: np.ndarray) -> array.array:
    """The bytes of ``arr`` as the array('B') a uint8[] field holds (one copy, no conversion)."""
    out = array.array('B')
    out.frombytes(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data)
    return out


def array_to_image(arr: np.ndarray, encoding: str = 'rgb8',
                   stamp: Time | float | int | None = None, frame_id: str = '') -> Image:
    """Encode an array as a ``sensor_msgs/Image`` with no row padding, native byte order.

    Args:
        arr: (H, W, C) uint8 for colour encodings, (H, W) uint8/uint16 for mono8/mono16;
            for yuv422_yuy2 either RGB (H, W, 3) (converted) or packed (H, W, 2), uint8 and W
            even. No dtype is cast: float input is refused, not truncated.
        encoding: one of :data:`ENCODINGS`.
        stamp: header stamp as a Time message, float seconds or int nanoseconds.
        frame_id: header frame id.

    Raises:
        ValueError: unknown encoding, an array whose shape/dtype does not fit it, or an odd
            width for yuv422_yuy2.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f'unknown encoding {encoding!r} (supported: {sorted(ENCODINGS)})')
    raw = _encode_raw(np.asarray(arr), encoding)
    bridge = _cv_bridge()
    if bridge is not None:
        msg = bridge.cv2_to_imgmsg(raw if raw.shape[2] > 1 else raw[:, :, 0], encoding=encoding)
    else:
        msg = Image(height=raw.shape[0], width=raw.shape[1], encoding=encoding,
                    is_bigendian=int(sys.byteorder == 'big'),
                    step=raw.shape[1] * raw.shape[2] * raw.dtype.itemsize)
        msg.data = _byte_array(raw)
    msg.header = make_header(stamp, frame_id)
    return msg


# --------------------------------------------------------------------------------------------
# sensor_msgs/CompressedImage


def _parse_compressed_format(fmt: str) -> tuple[str, str | None, str | None]:
    """'rgb8; jpeg compressed bgr8' -> ('jpeg', 'rgb8', 'bgr8'); 'png' -> ('png', None, None)."""
    original, sep, rest = fmt.partition(';')
    if not sep:
        original, rest = '', fmt
    words = rest.split()
    codec = words[0].lower() if words else ''
    if codec not in ('jpeg', 'jpg', 'png'):
        raise MalformedMessageError(f'CompressedImage.format {fmt!r}: codec must be jpeg or png')
    target = words[2] if len(words) >= 3 and words[1] == 'compressed' else None
    return ('jpeg' if codec == 'jpg' else codec), (original.strip() or None), target


def compressed_to_array(msg: CompressedImage, want: str | None = 'rgb8') -> np.ndarray:
    """Decode a jpeg/png ``sensor_msgs/CompressedImage``.

    Args:
        msg: the message; ``format`` as image_transport writes it ("rgb8; jpeg compressed bgr8")
            or just "jpeg"/"png" (then colour data is taken as bgr8).
        want: 'rgb8'/'bgr8' -> (H, W, 3) uint8; None -> the original encoding named in
            ``format`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16), else as decoded. 16-bit
            colour files keep their high byte (as mono16 does when reduced to 8 bits).

    Raises:
        MalformedMessageError: unsupported format, empty or undecodable data, data that decodes
            to neither 8- nor 16-bit pixels.
    """
    _, original, _ = _parse_compressed_format(msg.format)
    if len(msg.data) == 0:
        raise MalformedMessageError('CompressedImage.data is empty')
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise MalformedMessageError(f'CompressedImage.data could not be decoded as {msg.format!r}')
    if decoded.dtype not in (np.uint8, np.uint16):
        raise MalformedMessageError(
            f'CompressedImage.data decodes to {decoded.dtype} pixels (8 or 16 bit supported)')
    if decoded.ndim == 2:
        encoding = 'mono16' if decoded.dtype == np.uint16 else 'mono8'
        decoded = decoded[:, :, None]
    else:
        encoding = 'bgra8' if decoded.shape[2] == 4 else 'bgr8'
        if decoded.dtype == np.uint16:  # 16-bit colour png: its high byte, as for mono16
            decoded = (decoded >> 8).astype(np.uint8)
    if want is None:
        layout = original if original in ENCODINGS and original != 'yuv422_yuy2' else encoding
        return np.ascontiguousarray(_to_layout(decoded, encoding, layout))
    return np.ascontiguousarray(_convert_colour(decoded, encoding, want))


def _to_layout(pixels: np.ndarray, encoding: str, layout: str) -> np.ndarray:
    """(H, W, C) decoded bgr8/bgra8/mono8/mono16 pixels -> ``layout`` ((H, W) for mono)."""
    if layout == encoding:
        return pixels[:, :, 0] if pixels.shape[2] == 1 else pixels
    if layout in ('rgb8', 'bgr8'):
        return _convert_colour(pixels, encoding, layout)
    bgr = pixels if encoding == 'bgra8' else _convert_colour(pixels, encoding, 'bgr8')
    if layout in ('mono8', 'mono16'):  # a colour file whose original was mono: gray it
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGRA2GRAY if bgr.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
        return gray.astype(np.uint16) * 257 if layout == 'mono16' else gray
    if bgr.shape[2] == 3:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    return bgr if layout == 'bgra8' else cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGBA)


def array_to_compressed(arr: np.ndarray, encoding: str = 'rgb8', fmt: str = 'jpeg',
                        quality: int = 90, stamp: Time | float | int | None = None,
                        frame_id: str = '') -> CompressedImage:
    """Encode an array as a jpeg/png ``sensor_msgs/CompressedImage``.

    Args:
        arr: image in ``encoding``'s layout (see :func:`array_to_image`); rgb8, bgr8, rgba8,
            bgra8, mono8, or mono16 (png only).
        fmt: 'jpeg' or 'png'. jpeg drops alpha.
        quality: jpeg quality 1..100 (ignored for png).

    Returns:
        The message with ``format`` like "rgb8; jpeg compressed bgr8".
    """
    if fmt not in ('jpeg', 'png'):
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    if encoding not in ENCODINGS or encoding == 'yuv422_yuy2':
        raise ValueError(f'encoding {encoding!r} cannot be compressed')
    if encoding == 'mono16' and fmt == 'jpeg':
        raise ValueError('mono16 needs png (jpeg is 8-bit)')
    if not 1 <= quality <= 100:
        raise ValueError(f'quality must be in 1..100, got {quality}')
    raw = _encode_raw(np.asarray(arr), encoding)
    if ENCODINGS[encoding][0] == 1:
        pixels, target = raw[:, :, 0], encoding
    elif encoding in ('rgba8', 'bgra8') and fmt == 'png':
        pixels = raw if encoding == 'bgra8' else cv2.cvtColor(raw, cv2.COLOR_RGBA2BGRA)
        target = 'bgra8'
    else:
        pixels, target = _convert_colour(raw, encoding, 'bgr8'), 'bgr8'
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    ok, buffer = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', pixels, params)
    if not ok:
        raise ValueError(f'OpenCV could not encode a {pixels.shape} image as {fmt}')
    msg = CompressedImage(format=f'{encoding}; {fmt} compressed {target}')
    msg.data = _byte_array(buffer)
    msg.header = make_header(stamp, frame_id)
    return msg


# --------------------------------------------------------------------------------------------
# avatar_forcing_ros/AudioChunk


def audio_chunk_to_array(msg: AudioChunk, mono: bool = False) -> tuple[np.ndarray, int]:
    """Samples of an ``AudioChunk``.

    Args:
        msg: the chunk (interleaved float32 samples).
        mono: True -> mix down to shape (frames,) by averaging the channels.

    Returns:
        (samples, sample_rate): float32 (frames, channels) (or (frames,) with ``mono``), Hz.

    Raises:
        MalformedMessageError: sample_rate outside :data:`SAMPLE_RATE_RANGE`, channels 0, a
            sample count that is not a multiple of channels, or NaN/inf samples.
    """
    samples = np.frombuffer(msg.samples, dtype=np.float32) if len(msg.samples) else \
        np.zeros(0, np.float32)
    try:
        frames = interleaved_frames(samples, msg.sample_rate, msg.channels).copy()
    except BadAudioChunk as error:
        raise MalformedMessageError(f'AudioChunk.{error}') from None
    return (frames.mean(axis=1, dtype=np.float32) if mono else frames), int(msg.sample_rate)


def array_to_audio_chunk(samples: np.ndarray, sample_rate: int,
                         stamp: Time | float | int | None = None, sequence: int = 0,
                         frame_id: str = '') -> AudioChunk:
    """Build an ``AudioChunk``.

    Args:
        samples: (frames,) mono or (frames, channels); float (taken as [-1, 1]) or int16
            (scaled by 1/32768).
        sample_rate: Hz, within :data:`SAMPLE_RATE_RANGE`.
        stamp: time of the first sample (Time message, float seconds or int nanoseconds).
        sequence: chunk counter of the publisher.
        frame_id: the audio source (device or file name).

    Raises:
        ValueError: bad shape, zero channels, non-finite samples, sample_rate out of range.
    """
    samples = np.asarray(samples)
    low, high = SAMPLE_RATE_RANGE
    if not low <= sample_rate <= high:
        raise ValueError(f'sample_rate must be within {low}..{high} Hz, got {sample_rate}')
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise ValueError(f'samples must be (frames,) or (frames, channels>0), got {samples.shape}')
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    elif samples.dtype.kind != 'f':
        raise ValueError(f'samples must be float or int16, got {samples.dtype}')
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise ValueError('samples contain NaN or inf')
    msg = AudioChunk(header=make_header(stamp, frame_id), sample_rate=int(sample_rate),
                     channels=samples.shape[1], sequence=int(sequence))
    values = array.array('f')
    values.frombytes(samples.tobytes())
    msg.samples = values
    return msg


def _checked_frames(samples: np.ndarray, sample_rate: int, channels: int, what: str,
                    mono: bool) -> tuple[np.ndarray, int]:
    """Validated (frames, channels) float32 (or mono (frames,)) and the rate; errors name ``what``."""
    if channels < 1:
        raise MalformedMessageError(f'{what}.channels is {channels}')
    try:
        frames = interleaved_frames(samples, sample_rate, channels).copy()
    except BadAudioChunk as error:
        raise MalformedMessageError(f'{what}: {error}') from None
    return (frames.mean(axis=1, dtype=np.float32) if mono else frames), int(sample_rate)


# --------------------------------------------------------------------------------------------
# ros-drivers/audio_common: AudioData / AudioDataStamped (raw bytes) described by AudioInfo

# AudioInfo.coding_format values that mean raw PCM (audio_capture's `format`: 'wave' or 'mp3')
PCM_CODING_FORMATS = ('wave', 'pcm', 'raw', '')


@dataclass(frozen=True)
class PcmLayout:
    """How the bytes of an ``AudioData`` are laid out (the message itself does not say)."""

    sample_rate: int
    channels: int
    sample_format: str = 'S16LE'

    def check(self) -> None:
        """ValueError naming the field when the layout cannot be decoded."""
        if self.sample_format not in PCM_SAMPLE_FORMATS:
            raise ValueError(f'sample_format {self.sample_format!r} is not supported '
                             f'(supported: {", ".join(PCM_SAMPLE_FORMATS)})')
        if self.channels < 1:
            raise ValueError(f'channels must be at least 1, got {self.channels}')
        low, high = SAMPLE_RATE_RANGE
        if not low <= self.sample_rate <= high:
            raise ValueError(f'sample_rate must be within {low}..{high} Hz, got {self.sample_rate}')


def pcm_layout_from_audio_info(msg: Any) -> PcmLayout:
    """ros-drivers ``audio_common_msgs/AudioInfo`` -> :class:`PcmLayout`.

    Raises:
        MalformedMessageError: a compressed coding_format (mp3), an unknown sample_format, zero
            channels or a sample rate outside :data:`SAMPLE_RATE_RANGE`.
    """
    if msg.coding_format.lower() not in PCM_CODING_FORMATS:
        raise MalformedMessageError(f'AudioInfo.coding_format {msg.coding_format!r}: only raw PCM '
                                    f"('wave') can be read (set audio_capture's format to wave)")
    layout = PcmLayout(int(msg.sample_rate), int(msg.channels), msg.sample_format.upper())
    try:
        layout.check()
    except ValueError as error:
        raise MalformedMessageError(f'AudioInfo.{error}') from None
    return layout


def pcm_bytes_to_array(data: Any, layout: PcmLayout, mono: bool = False) -> tuple[np.ndarray, int]:
    """The ``uint8[] data`` of a ros-drivers ``AudioData`` -> (samples, sample_rate).

    Args:
        data: the message's bytes (bytes, array('B') or a list of ints).
        layout: rate, channels and sample format (from parameters or an ``AudioInfo``).
        mono: True -> mix down to shape (frames,).

    Returns:
        float32 samples in [-1, 1], (frames, channels) (or (frames,) with ``mono``), and Hz.

    Raises:
        MalformedMessageError: a byte count that is not whole frames, or a bad layout.
    """
    try:
        values = pcm_samples(bytes(data), layout.sample_format, layout.channels)
    except ValueError as error:
        raise MalformedMessageError(f'AudioData.{error}') from None
    return _checked_frames(values, layout.sample_rate, layout.channels, 'AudioData', mono)


def array_to_pcm_bytes(samples: np.ndarray, layout: PcmLayout) -> bytes:
    """(frames,) or (frames, channels) float samples in [-1, 1] -> PCM bytes in ``layout``
    (clipped to the format's range; the reverse of :func:`pcm_bytes_to_array`)."""
    layout.check()
    samples = np.asarray(samples, np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] != layout.channels:
        raise ValueError(f'samples must be (frames, {layout.channels}), got {samples.shape}')
    wire, scale = PCM_SAMPLE_FORMATS[layout.sample_format]
    dtype = np.dtype(wire)
    if dtype.kind == 'f':
        return samples.astype(dtype).tobytes()
    values = np.round(samples * scale) + (128 if layout.sample_format == 'U8' else 0)
    info = np.iinfo(dtype)
    return np.clip(values, info.min, info.max).astype(dtype).tobytes()


# --------------------------------------------------------------------------------------------
# mgonzs13/audio_common: AudioStamped {header, audio: {audio_data, info}}

def audio_stamped_to_array(msg: Any, mono: bool = False) -> tuple[np.ndarray, int]:
    """mgonzs13 ``audio_common_msgs/AudioStamped`` -> (samples, sample_rate), as
    :func:`audio_chunk_to_array` (float32 in [-1, 1], interleaved channels).

    Raises:
        MalformedMessageError: an unsupported info.format, bad channels or rate, a sample count
            that is not a multiple of channels, NaN/inf samples.
    """
    info = msg.audio.info
    try:
        values = portaudio_samples(msg.audio.audio_data, info.format)
    except ValueError as error:
        raise MalformedMessageError(f'AudioStamped.audio.info.{error}') from None
    return _checked_frames(values, int(info.rate), int(info.channels), 'AudioStamped.audio.info', mono)


def array_to_audio_stamped(samples: np.ndarray, sample_rate: int,
                           stamp: Time | float | int | None = None, frame_id: str = '',
                           portaudio_format: int = 1) -> Any:
    """Build an mgonzs13 ``audio_common_msgs/AudioStamped`` (float32 by default, as piper_ros
    and their tts node send it); ``samples`` (frames,) or (frames, channels) in [-1, 1]."""
    from audio_common_msgs.msg import AudioStamped  # noqa: PLC0415 (not installed everywhere)
    samples = np.asarray(samples, np.float64)
    if samples.ndim == 1:
        samples = samples[:, None]
    field, dtype, scale = PORTAUDIO_FORMATS[portaudio_format]
    values = samples.reshape(-1) * (1.0 if dtype == 'f4' else scale) + (128 if dtype == 'u1' else 0)
    if dtype != 'f4':
        info = np.iinfo(dtype)
        values = np.clip(np.round(values), info.min, info.max)
    msg = AudioStamped(header=make_header(stamp, frame_id))
    setattr(msg.audio.audio_data, field, values.astype(dtype).tolist())
    msg.audio.info.format = int(portaudio_format)
    msg.audio.info.channels = int(samples.shape[1])
    msg.audio.info.rate = int(sample_rate)
    msg.audio.info.chunk = int(samples.shape[0])
    return msg


# --------------------------------------------------------------------------------------------
# hri_msgs (ROS4HRI, REP-155)


def face_params_to_expression(params: np.ndarray, stamp: Time | float | int | None = None,
                              frame_id: str = '') -> Any:
    """Portable face parameters (``motion_space``) -> ``hri_msgs/Expression`` (category,
    valence, arousal, confidence; see :mod:`avatar_forcing_ros.portable.expression_label`)."""
    from hri_msgs.msg import Expression  # noqa: PLC0415 (not installed everywhere)

    from avatar_forcing_ros.portable.expression_label import classify  # noqa: PLC0415
    label = classify(np.asarray(params, np.float32))
    return Expression(header=make_header(stamp, frame_id), expression=label.expression,
                      valence=label.valence, arousal=label.arousal, confidence=label.confidence)
