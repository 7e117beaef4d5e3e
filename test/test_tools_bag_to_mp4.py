"""bag_to_mp4: a session bag becomes a playable MP4 whose audio sits at the frames' media times,
whatever bad messages the bag holds."""
import subprocess

import cv2
import numpy as np
import pytest

import bag_faults as bf
from avatar_forcing_ros.evaluation.synthetic_bag import SyntheticSession, write_synthetic_bag
from avatar_forcing_ros.tools.bag_to_mp4 import main

RATE = 16000


def _decoded_audio(mp4):
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(mp4), "-f", "f32le", "-ac", "1",
                          "-ar", str(RATE), "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def test_mp4_has_every_frame_and_audio_at_its_stamp(tmp_path):
    frames = 75  # 3 s at 25 fps
    ok, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    audio = np.zeros(frames * RATE // 25, dtype=np.float32)
    burst_at = int(1.6 * RATE)
    t = np.arange(int(0.2 * RATE)) / RATE
    audio[burst_at:burst_at + len(t)] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    bag = tmp_path / "session"
    write_synthetic_bag(bag, SyntheticSession(avatar_motion=np.zeros((frames, 4), np.float32),
                                              image_jpeg=jpeg.tobytes(), avatar_audio=audio))
    out = tmp_path / "avatar.mp4"

    assert main([str(bag), str(out)]) == 0

    video = cv2.VideoCapture(str(out))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == frames
    decoded = _decoded_audio(out)
    envelope = np.abs(decoded) > 0.1
    onset = np.argmax(envelope) / RATE
    assert envelope.any()
    assert onset == pytest.approx(1.6, abs=0.05)  # lips and speech stay in sync in the file


def test_bag_without_images_is_a_clear_failure(tmp_path):
    bag = tmp_path / "session"
    write_synthetic_bag(bag, SyntheticSession(avatar_motion=np.zeros((10, 4), np.float32)))
    assert main([str(bag), str(tmp_path / "x.mp4")]) == 1
    assert not (tmp_path / "x.mp4").exists()


def _count_frames(mp4) -> int:
    video, count = cv2.VideoCapture(str(mp4)), 0
    while video.read()[0]:
        count += 1
    return count


def _speech_bag(tmp_path, extra, seconds=2.0, frames=75, size=64):
    """75 frames (3 s); 16 kHz speech track of ``seconds`` with a 1 kHz burst at 1.6 s."""
    audio = np.zeros(int(seconds * RATE), dtype=np.float32)
    t = np.arange(int(0.2 * RATE)) / RATE
    audio[int(1.6 * RATE):int(1.8 * RATE)] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    bag = tmp_path / "session"
    write_synthetic_bag(bag, SyntheticSession(avatar_motion=np.zeros((frames, 4), np.float32),
                                              image_jpeg=bf.jpeg(size), avatar_audio=audio),
                        extra=extra)
    return bag


def test_each_chunk_is_resampled_from_its_own_rate(tmp_path, caplog):
    """The last chunk (48 kHz) no longer sets the rate of the whole track, and an impossible
    rate or a sample count that does not divide by the channels only loses that chunk."""
    t0 = bf.T0
    burst = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(960) / 48000)).astype(np.float32)
    extra = [bf.audio_chunk(t0 + 2_100_000_000, t0 + 2_050_000_000, np.zeros(3), channels=2),
             bf.audio_chunk(t0 + 2_200_000_000, t0 + 2_150_000_000, np.zeros(320), rate=400_001),
             bf.audio_chunk(t0 + 2_600_000_000, t0 + 2_500_000_000, burst, rate=48000)]
    bag = _speech_bag(tmp_path, extra)
    out = tmp_path / "avatar.mp4"

    assert main([str(bag), str(out)]) == 0

    assert _count_frames(out) == 75
    loud = np.abs(_decoded_audio(out)) > 0.1
    assert np.argmax(loud) / RATE == pytest.approx(1.6, abs=0.05)
    late = np.flatnonzero(loud[int(2.2 * RATE):]) / RATE + 2.2
    assert late.size and late[0] == pytest.approx(2.5, abs=0.03)
    assert late[-1] == pytest.approx(2.52, abs=0.03)        # 20 ms at 48 kHz stays 20 ms
    assert "/avatar/audio: 1 of 103 messages left out: sample count not a multiple of " \
           "channels" in caplog.text
    assert "/avatar/audio: 1 of 103 messages left out: sample rate outside" in caplog.text


def test_unusable_images_are_left_out_and_the_video_keeps_its_timing(tmp_path, caplog):
    png = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    good = bf.jpeg(64)
    extra = [bf.compressed(bf.frame_ns(n) + 130_000_000, bf.frame_ns(n) + 1_000_000, data, fmt)
             for n, data, fmt in ((10, b"", "jpeg"), (20, b"garbage" * 9, "jpeg"),
                                  (30, png, "png"), (40, png, "jpeg"),
                                  (50, good[:len(good) // 2], "jpeg"))]
    bag = _speech_bag(tmp_path, extra, size=63)            # odd size: H.264 needs even
    out = tmp_path / "avatar.mp4"

    assert main([str(bag), str(out)]) == 0

    assert _count_frames(out) == 75
    assert "/avatar/image/compressed: 4 of 80 messages left out: not a decodable JPEG" \
        in caplog.text
    assert "/avatar/image/compressed: 1 of 80 messages left out: format 'png' is not JPEG" \
        in caplog.text


def test_truncated_bag_still_gives_an_mp4_and_exit_status_1(tmp_path):
    bag = bf.truncate(_speech_bag(tmp_path, [], frames=500, seconds=20.0), 0.7)
    out = tmp_path / "avatar.mp4"
    assert main([str(bag), str(out)]) == 1
    assert 50 < _count_frames(out) < 500


@pytest.mark.parametrize("fps", ["0", "-25", "nan"])
def test_impossible_frame_rate_is_a_usage_error(tmp_path, fps):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "bag"), str(tmp_path / "x.mp4"), "--fps", fps])
    assert stop.value.code == 2


def test_a_defect_of_the_export_is_one_line(tmp_path, monkeypatch, caplog):
    """An exception nobody foresaw (stood in for by a patched frame sequence: no such input is
    known) ends in one line naming it and exit status 1, never a traceback."""
    import avatar_forcing_ros.tools.bag_to_mp4 as export

    def broken(*args):
        raise ArithmeticError("unforeseen")
    monkeypatch.setattr(export, "frame_sequence", broken)
    bag = _speech_bag(tmp_path, [])
    assert main([str(bag), str(tmp_path / "x.mp4")]) == 1
    assert "the export failed (ArithmeticError: unforeseen)" in caplog.text
