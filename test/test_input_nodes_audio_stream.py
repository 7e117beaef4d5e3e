"""ROS-free audio stream helpers behind audio_capture / audio_file_player."""
import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from avatar_forcing_ros.media.audio_stream import ChunkAssembler, StreamResampler, load_audio


@pytest.mark.parametrize('in_rate, out_rate', [(48000, 16000), (44100, 16000), (8000, 16000)])
def test_stream_resampler_equals_whole_signal(in_rate, out_rate):
    signal = np.random.default_rng(0).normal(0, 0.2, in_rate).astype(np.float32)  # 1 s
    resampler = StreamResampler(in_rate, out_rate)
    pieces, start = [], 0
    for size in [100, 1, 777, 441, 2000] * 100:
        pieces.append(resampler.process(signal[start:start + size]))
        start += size
        if start >= len(signal):
            break
    streamed = np.concatenate(pieces)
    whole = resample_poly(signal, resampler.up, resampler.down)
    assert len(streamed) >= len(whole) - (resampler.delay + resampler.down) * out_rate // in_rate - 2
    assert np.allclose(streamed, whole[:len(streamed)], atol=1e-5)


def test_chunk_assembler_sizes_and_stamps():
    assembler = ChunkAssembler(48000, 16000, 320)
    chunks = []
    for k in range(50):  # 50 device blocks of 10 ms, stamped 10 ms apart from t=1 s
        chunks += assembler.push(np.zeros(480, np.float32), 1_000_000_000 + k * 10_000_000)
    assert len(chunks) >= 22 and all(len(c) == 320 for c, _ in chunks)
    stamps = np.array([s for _, s in chunks])
    assert stamps[0] == 1_000_000_000
    assert np.all(np.diff(stamps) == 20_000_000)


def test_chunk_assembler_follows_block_stamps_after_a_gap():
    assembler = ChunkAssembler(16000, 16000, 160)
    first = assembler.push(np.zeros(320, np.float32), 0)
    later = assembler.push(np.zeros(320, np.float32), 5_000_000_000)  # 5 s gap (dropped blocks)
    assert [s for _, s in first] == [0, 10_000_000]
    assert [s for _, s in later] == [5_000_000_000, 5_010_000_000]


def test_load_audio_mixdown_resample_and_errors(tmp_path):
    stereo = np.stack([np.linspace(-1, 1, 8000), np.zeros(8000)], axis=1).astype(np.float32)
    path = tmp_path / 'two.wav'
    soundfile.write(path, stereo, 8000, subtype='FLOAT')
    assert np.array_equal(load_audio(path, 8000), stereo.mean(axis=1))
    assert len(load_audio(path, 16000)) == 16000
    with pytest.raises(ValueError, match='missing.wav'):
        load_audio(tmp_path / 'missing.wav', 16000)
    (tmp_path / 'junk.wav').write_bytes(b'not audio')
    with pytest.raises(ValueError, match='junk.wav'):
        load_audio(tmp_path / 'junk.wav', 16000)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_load_audio_refuses_non_finite_samples(tmp_path, bad):
    samples = np.zeros(1600, np.float32)
    samples[800] = bad
    path = tmp_path / 'broken.wav'
    soundfile.write(path, samples, 16000, subtype='FLOAT')  # a float WAV can store NaN/inf
    with pytest.raises(ValueError, match=r"broken\.wav.*NaN or infinite"):
        load_audio(path, 16000)
    with pytest.raises(ValueError, match=r"broken\.wav.*NaN or infinite"):
        load_audio(path, 48000)  # resampled


def test_stamp_smoother_removes_jitter_follows_drift_and_resets():
    from avatar_forcing_ros.media.audio_stream import StampSmoother
    smoother = StampSmoother(16000)
    jitter = np.random.default_rng(3).uniform(-6e6, 6e6, 600)
    drift = 1.001  # device clock 0.1 % fast
    measured = (np.arange(600) * 20e6 * drift + jitter).astype(np.int64)
    stamps = np.array([smoother.update(int(m), 320) for m in measured])
    steps = np.diff(stamps[100:]) / 1e6
    assert np.all(np.abs(steps - 20) < 1.5)  # raw steps jitter by up to 20 ms
    assert abs(steps.mean() - 20 * drift) < 0.01
    assert abs(stamps[-1] - 599 * 20e6 * drift) < 3e6
    assert smoother.update(int(measured[-1] + 5e9), 320) == int(measured[-1] + 5e9)  # a gap
    catch_up = [smoother.update(int(measured[-1] + 5e9 + k * 40e6), 320) for k in range(1, 5)]
    assert catch_up == [int(measured[-1] + 5e9 + k * 40e6) for k in range(1, 5)]  # followed
    assert smoother.update(0, 320, after_gap=True) == 0


def test_stamp_smoother_never_goes_back_when_the_driver_does():
    """A block reported 20 ms earlier than the previous block's end (seen under load through
    PulseAudio) used to restart the timeline there: the next chunk repeated the previous stamp.
    Stamps stay increasing, and a clock that is really behind is still followed."""
    from avatar_forcing_ros.media.audio_stream import StampSmoother
    smoother = StampSmoother(16000)
    measured = [k * 20_000_000 for k in range(50)] + [50 * 20_000_000 - 20_000_000]
    measured += [measured[-1] + k * 20_000_000 for k in range(1, 200)]   # 20 ms behind from here on
    stamps = np.array([smoother.update(m, 320) for m in measured])
    assert np.all(np.diff(stamps) >= 10_000_000), np.diff(stamps).min()
    assert abs(stamps[-1] - measured[-1]) < 1_000_000      # converged onto the slower clock


def test_clock_offset_takes_the_narrowest_bracket():
    from avatar_forcing_ros.media.audio_stream import clock_offset_ns
    # reference reads: the first pair is 8 ms apart (a preempted thread), the second 2 us
    reference = iter([1_000_000_000, 1_008_000_000, 2_000_000_000, 2_000_002_000])
    stream = iter([0.5, 1.4])  # the stream clock runs 0.6 s behind the reference
    offset = clock_offset_ns(lambda: next(reference), lambda: next(stream), reads=2)
    assert offset == 2_000_001_000 - 1_400_000_000  # not the midpoint of the wide bracket


def test_block_capture_time_prefers_adc_then_callback_then_now():
    from avatar_forcing_ros.media.audio_stream import block_capture_ns

    def now_ns() -> int:
        return 9_000_000_000
    offset = 100_000_000  # stream clock -> reference clock
    # 320 frames at 16 kHz = 20 ms; the ADC time is the first sample's own capture time
    assert block_capture_ns(2.5, 2.53, 320, 16000, offset, now_ns) == 2_600_000_000
    # no ADC time: the block ended when the callback ran
    assert block_capture_ns(0.0, 2.53, 320, 16000, offset, now_ns) == 2_610_000_000
    # no driver times at all: the block ended now
    assert block_capture_ns(0.0, 0.0, 320, 16000, offset, now_ns) == 8_980_000_000


def test_media_helpers_import_without_ros():
    import subprocess
    import sys
    code = ("import sys\n"
            "for name in ('rclpy', 'std_msgs', 'sensor_msgs', 'builtin_interfaces',\n"
            "             'avatar_forcing_ros.msg'):\n"
            "    sys.modules[name] = None  # any import of these now fails\n"
            "import avatar_forcing_ros.media.audio_stream\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
