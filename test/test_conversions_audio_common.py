"""audio_common_msgs' audio <-> NumPy (avatar_forcing_ros.conversions) and the avatar's expression
label, without the message packages: the converters read fields by name, so plain namespaces
with the published field names stand in (test_interop_messages.py uses the real, test-built
types over DDS)."""
from types import SimpleNamespace as NS

import numpy as np
import pytest

from avatar_forcing_ros import conversions as conv
from avatar_forcing_ros.conversions import MalformedMessageError, PcmLayout
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.expression_label import classify


@pytest.mark.parametrize('fmt', sorted(conv.PCM_SAMPLE_FORMATS))
def test_pcm_round_trip_every_sample_format(fmt):
    samples = np.random.default_rng(0).uniform(-0.9, 0.9, size=(160, 2))
    layout = PcmLayout(22050, 2, fmt)
    back, rate = conv.pcm_bytes_to_array(conv.array_to_pcm_bytes(samples, layout), layout)
    step = max(1.0 / conv.PCM_SAMPLE_FORMATS[fmt][1], 1e-7)   # float32 results: ~6e-8 resolution
    assert rate == 22050 and back.shape == (160, 2) and np.abs(back - samples).max() <= step
    mono, _ = conv.pcm_bytes_to_array(conv.array_to_pcm_bytes(samples, layout), layout, mono=True)
    assert mono.shape == (160,)


def test_pcm_known_values_and_refusals():
    s16 = np.array([-32768, 0, 16384], '<i2').tobytes()
    values, _ = conv.pcm_bytes_to_array(s16, PcmLayout(16000, 1, 'S16LE'))
    assert values[:, 0].tolist() == [-1.0, 0.0, 0.5]
    u8, _ = conv.pcm_bytes_to_array(bytes([0, 128, 192]), PcmLayout(16000, 1, 'U8'))
    assert u8[:, 0].tolist() == [-1.0, 0.0, 0.5]
    with pytest.raises(MalformedMessageError, match='not whole frames'):
        conv.pcm_bytes_to_array(b'\0' * 6, PcmLayout(16000, 2, 'S16LE'))   # 1.5 frames


def test_audio_info_gives_the_layout_and_refuses_mp3():
    info = NS(channels=2, sample_rate=44100, sample_format='s16le', bitrate=0, coding_format='wave')
    assert conv.pcm_layout_from_audio_info(info) == PcmLayout(44100, 2, 'S16LE')
    with pytest.raises(MalformedMessageError, match="coding_format 'mp3'"):
        conv.pcm_layout_from_audio_info(NS(**{**vars(info), 'coding_format': 'mp3'}))
    with pytest.raises(MalformedMessageError, match='sample_format'):
        conv.pcm_layout_from_audio_info(NS(**{**vars(info), 'sample_format': 'S24_32LE'}))


def _stamped(fmt: int, field: str, values, channels=1, rate=16000):
    data = {f: [] for f in ('float32_data', 'int32_data', 'int16_data', 'int8_data', 'uint8_data')}
    data[field] = values
    return NS(audio=NS(audio_data=NS(**data), info=NS(format=fmt, channels=channels, rate=rate, chunk=len(values))))


def test_audio_stamped_reads_the_field_its_format_names():
    for fmt, field, raw, want in ((1, 'float32_data', [0.25, -0.5], [0.25, -0.5]),
                                  (2, 'int32_data', [2 ** 30, -2 ** 31], [0.5, -1.0]),
                                  (8, 'int16_data', [16384, -32768], [0.5, -1.0]),
                                  (16, 'int8_data', [64, -128], [0.5, -1.0]),
                                  (32, 'uint8_data', [192, 0], [0.5, -1.0])):
        samples, rate = conv.audio_stamped_to_array(_stamped(fmt, field, raw))
        assert rate == 16000 and samples[:, 0].tolist() == want, fmt
    stereo, _ = conv.audio_stamped_to_array(_stamped(1, 'float32_data', [0.5, 0.0, 1.0, 0.0], 2), mono=True)
    assert stereo.tolist() == [0.25, 0.5]


@pytest.mark.parametrize('msg, text', [
    (_stamped(4, 'int32_data', [1]), 'not a supported PortAudio'),      # paInt24: no field for it
    (_stamped(1, 'float32_data', [0.1], channels=0), 'channels is 0'),
    (_stamped(1, 'float32_data', [0.1, 0.2, 0.3], channels=2), 'not a multiple'),
    (_stamped(1, 'float32_data', [0.1], rate=5), 'sample_rate'),
    (_stamped(1, 'float32_data', [float('nan')]), 'NaN'),
])
def test_audio_stamped_refusals_name_the_field(msg, text):
    with pytest.raises(MalformedMessageError, match=text):
        conv.audio_stamped_to_array(msg)


def test_expression_label_of_face_parameters():
    def face(**values):
        return ms.from_dict(values)
    assert classify(face()).expression == 'neutral'
    happy = classify(face(smile=0.9))
    assert happy.expression == 'happy' and happy.valence > 0.5 and happy.confidence > 0.5
    assert classify(face(brow_raise=0.9, jaw_open=0.8)).expression == 'surprised'
    assert classify(face(jaw_open=0.8)).expression == 'neutral'   # speech opens the jaw too
    annoyed = classify(face(brow_raise=-0.9))
    assert annoyed.expression == 'annoyed' and annoyed.valence < 0
