"""AudioChunk <-> NumPy and stamp helpers (avatar_forcing_ros.conversions)."""
import array

import numpy as np
import pytest
from builtin_interfaces.msg import Time

from avatar_forcing_ros import conversions as conv
from avatar_forcing_ros.conversions import MalformedMessageError
from avatar_forcing_ros.msg import AudioChunk


def test_float_stereo_round_trip():
    samples = np.random.default_rng(1).uniform(-1, 1, size=(320, 2)).astype(np.float32)
    msg = conv.array_to_audio_chunk(samples, 16000, stamp=Time(sec=5, nanosec=7), sequence=42,
                                    frame_id='mic')
    assert (msg.sample_rate, msg.channels, msg.sequence) == (16000, 2, 42)
    assert msg.header.stamp.sec == 5 and msg.header.stamp.nanosec == 7
    assert msg.header.frame_id == 'mic'
    assert list(msg.samples[:2]) == list(samples[0])  # interleaved
    back, rate = conv.audio_chunk_to_array(msg)
    assert rate == 16000 and back.dtype == np.float32 and np.array_equal(back, samples)
    mono, _ = conv.audio_chunk_to_array(msg, mono=True)
    assert mono.shape == (320,) and np.allclose(mono, samples.mean(axis=1), atol=1e-7)


def test_int16_is_scaled_and_mono_is_one_channel():
    ints = np.array([-32768, -16384, 0, 16384, 32767], np.int16)
    msg = conv.array_to_audio_chunk(ints, 8000)
    assert msg.channels == 1
    back, _ = conv.audio_chunk_to_array(msg)
    assert back.shape == (5, 1)
    assert np.array_equal(back[:, 0], ints.astype(np.float32) / 32768)


def test_empty_chunk_is_valid():
    back, rate = conv.audio_chunk_to_array(conv.array_to_audio_chunk(np.zeros(0), 16000))
    assert back.shape == (0, 1) and rate == 16000


def chunk(**fields) -> AudioChunk:
    msg = AudioChunk(sample_rate=16000, channels=2)
    msg.samples = array.array('f', [0.0, 0.1, 0.2, 0.3])
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize('fields, field_name', [
    ({'sample_rate': 0}, 'sample_rate'),
    ({'sample_rate': 999}, 'sample_rate'),
    ({'sample_rate': 384001}, 'sample_rate'),
    ({'sample_rate': 2**31 - 1}, 'sample_rate'),  # would make a resampler allocate gigabytes
    ({'channels': 0}, 'channels'),
    ({'channels': 3}, 'channels'),
    ({'samples': array.array('f', [0.0, float('nan')])}, 'samples'),
    ({'samples': array.array('f', [float('inf'), 0.0])}, 'samples'),
])
def test_malformed_audio_names_the_field(fields, field_name):
    with pytest.raises(MalformedMessageError, match=field_name):
        conv.audio_chunk_to_array(chunk(**fields))


def test_bad_audio_arrays_rejected_on_write():
    for rate in (0, 999, 384001, 2**31 - 1, float('nan')):
        with pytest.raises(ValueError, match='sample_rate'):
            conv.array_to_audio_chunk(np.zeros(4), rate)
    with pytest.raises(ValueError, match='NaN'):
        conv.array_to_audio_chunk(np.array([np.nan]), 16000)
    with pytest.raises(ValueError, match='channels'):
        conv.array_to_audio_chunk(np.zeros((4, 0)), 16000)
    with pytest.raises(ValueError, match='int16'):
        conv.array_to_audio_chunk(np.zeros(4, np.int32), 16000)


@pytest.mark.parametrize('rate', conv.SAMPLE_RATE_RANGE)
def test_sample_rate_range_is_inclusive(rate):
    _, read_rate = conv.audio_chunk_to_array(conv.array_to_audio_chunk(np.zeros(4), rate))
    assert read_rate == rate


def test_stamp_helpers():
    stamp = conv.nanoseconds_to_stamp(1_700_000_000_123_456_789)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert conv.stamp_to_nanoseconds(stamp) == 1_700_000_000_123_456_789
    assert conv.stamp_to_seconds(stamp) == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    back = conv.seconds_to_stamp(2.75)
    assert (back.sec, back.nanosec) == (2, 750_000_000)
    assert conv.make_header(10**9 + 5, 'x').stamp.nanosec == 5
    with pytest.raises(ValueError):
        conv.nanoseconds_to_stamp(-1)
    with pytest.raises(ValueError):
        conv.seconds_to_stamp(float('nan'))
